"""The box is gone: a new appliance rebuilt from the backup target and its key holders alone."""

from __future__ import annotations

import io
import json
import shutil
import tomllib
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from appliance import keys
from appliance.cli import main
from appliance.kernel.config import write_initial
from appliance.kernel.runtime import Appliance
from appliance.keys import PassphraseHolder, sealing, state
from tests.conftest import FAST_ARGON2, FAST_KDF
from tests.factories import Factory
from tests.keys.conftest import FAST_KDF as HOLDER_KDF
from tests.keys.conftest import PASSPHRASES

SECRET_EMAIL = "ceo@very-secret-client.example"
ATTACHMENT = b"signed contract\n" * 2000


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


class Box:
    """A real (non-demo) appliance sealed 2 of 3, with CRM data, an attachment and checkpoints."""

    def __init__(self, root: Path, database_url: str) -> None:
        from audit.checkpoint import checkpoint_now
        from crm.roles import seed_roles

        self.root = root
        self.data_dir = (root / "old-box").resolve()
        self.target = root / "usb"
        write_initial(self.data_dir, {
            "database_url": database_url, "argon2": FAST_ARGON2, "keys": FAST_KDF,
            "audit": {"signer": "keyring"},
            "backup": {"target": "usb", "targets": {"usb": {"type": "local", "path": str(self.target)}}},
        })
        holders = [PassphraseHolder(n, p, HOLDER_KDF) for n, p in PASSPHRASES.items()]
        self.init = keys.init_keys(self.data_dir, threshold=2, holders=holders, share_dir=root / "shares")
        sealing.unseal_with_recovery(self.data_dir, self.init.recovery_key)
        appliance = Appliance.open(self.data_dir)
        with appliance.session() as db:
            seed_roles(db)
        appliance.dispose()
        engine = create_engine(_driver(database_url))
        with Session(engine, expire_on_commit=False) as db:
            make = Factory(db)
            alice = make.user("alice")
            self.account_id = make.account(alice, email=SECRET_EMAIL).id
        engine.dispose()
        (self.data_dir / "attachments").mkdir()
        keys.write_encrypted(self.data_dir / "attachments" / "contract.bin", "contract", io.BytesIO(ATTACHMENT))
        appliance = Appliance.open(self.data_dir)
        with appliance.session() as db:
            checkpoint_now(db, appliance.settings)
        appliance.dispose()

    def share(self, holder: str) -> str:
        return str(next(p for p in self.init.share_files if p.stem == holder))

    def lose(self) -> None:
        """The box burns: its data directory and the key in memory are gone."""
        sealing.seal_now(self.data_dir)
        state.clear()
        shutil.rmtree(self.data_dir)


def _driver(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture
def box(tmp_path, database_url):
    made = Box(tmp_path, database_url)
    yield made
    state.clear()


@pytest.fixture
def new_database(database_url, tmp_path):
    """Where the new box keeps its database: None (SQLite in its data dir) or a new PostgreSQL one."""
    if not database_url.startswith("postgresql"):
        yield None
        return
    url = make_url(database_url).set(database=f"recovered_{uuid.uuid4().hex[:8]}")
    yield url.render_as_string(hide_password=False)
    admin = create_engine(_driver(database_url.rsplit("/", 1)[0] + "/postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    admin.dispose()


def _back_up(box: Box) -> str:
    result = run("backup", "run", "--data-dir", str(box.data_dir))
    assert result.exit_code == 0, result.output
    return json.loads(run("backup", "list", "--json", "--data-dir", str(box.data_dir)).output)[-1]["archive_id"]


def _check_restored(new: Path, expected_url: str) -> None:
    settings = tomllib.loads((new / "citadel.toml").read_text())
    assert settings["database_url"] in ("", expected_url)
    appliance = Appliance.open(new)
    assert appliance.settings.database_url == expected_url
    from crm.models import Account

    with appliance.session() as db:
        assert [a.email for a in db.scalars(select(Account))] == [SECRET_EMAIL]  # decrypted with the recovered keys
    appliance.dispose()
    assert keys.read_decrypted(new / "attachments" / "contract.bin", "contract") == ATTACHMENT
    verified = run("audit", "verify", "--data-dir", str(new))
    assert verified.exit_code == 0, verified.output


def test_the_target_holds_the_wrapped_keys_and_nothing_in_the_clear(box):
    _back_up(box)
    names = [p.name for p in (box.target / "keys").iterdir()]
    assert len(names) == 1
    document = json.loads((box.target / "keys" / names[0]).read_text())
    assert document["keyring"] == json.loads((box.data_dir / "keys" / "keyring.json").read_text())
    assert document["seal"] == json.loads((box.data_dir / "keys" / "seal.json").read_text())
    _back_up(box)  # unchanged keys are not copied again
    assert len(list((box.target / "keys").iterdir())) == 1


def test_a_new_box_is_rebuilt_from_the_target_and_the_recovery_key(box, tmp_path, new_database):
    archive = _back_up(box)
    box.lose()
    new = tmp_path / "new-box"
    args = ["init", "--data-dir", str(new), "--restore-from", str(box.target), "--recovery-key"]
    if new_database:
        args += ["--database-url", new_database]
    result = run(*args, input=box.init.recovery_key + "\n")
    assert result.exit_code == 0, result.output
    assert archive in result.output and "audit log verifies" in result.output
    _check_restored(new.resolve(), new_database or f"sqlite:///{new.resolve() / 'citadel.db'}")


def test_a_new_box_is_rebuilt_with_two_holders_share_files(box, tmp_path, new_database):
    _back_up(box)
    box.lose()
    new = tmp_path / "new-box"
    args = ["init", "--data-dir", str(new), "--restore-from", str(box.target),
            "--share", box.share("alice"), "--share", box.share("carol")]
    if new_database:
        args += ["--database-url", new_database]
    result = run(*args, input=f"{PASSPHRASES['alice']}\n{PASSPHRASES['carol']}\n")
    assert result.exit_code == 0, result.output
    _check_restored(new.resolve(), new_database or f"sqlite:///{new.resolve() / 'citadel.db'}")


def test_keys_rotated_after_the_backup_are_on_the_target_too(box, tmp_path, new_database):
    """A key rotation copies the new keyring at once: archives made with it stay recoverable."""
    from appliance.keys.rotation import Rotation

    _back_up(box)
    appliance = Appliance.open(box.data_dir)
    Rotation(appliance.engine, keys.current(), "backups").run()
    appliance.dispose()
    newest = json.loads(sorted((box.target / "keys").iterdir())[-1].read_text())
    assert newest["keyring"]["purposes"]["backups"]["current"] == 2
    archive = _back_up(box)  # made with backup key version 2
    box.lose()
    new = tmp_path / "new-box"
    args = ["init", "--data-dir", str(new), "--restore-from", str(box.target), "--recovery-key"]
    if new_database:
        args += ["--database-url", new_database]
    result = run(*args, input=box.init.recovery_key + "\n")
    assert result.exit_code == 0, result.output
    assert archive in result.output


def test_a_wrong_recovery_key_leaves_nothing_behind(box, tmp_path):
    _back_up(box)
    box.lose()
    new = tmp_path / "new-box"
    from appliance.keys.recovery import new_recovery_key

    wrong = new_recovery_key()[1]
    result = run("init", "--data-dir", str(new), "--restore-from", str(box.target), "--recovery-key",
                 input=f"{wrong}\n")
    assert result.exit_code != 0
    assert "recovery key" in result.output
    assert not new.exists()


def test_restore_refuses_a_data_dir_that_is_not_empty(box, tmp_path):
    _back_up(box)
    result = run("init", "--data-dir", str(box.data_dir), "--restore-from", str(box.target), "--recovery-key",
                 input=box.init.recovery_key + "\n")
    assert result.exit_code != 0 and "not empty" in result.output
    assert (box.data_dir / "citadel.toml").exists()


def test_a_target_without_key_documents_says_what_to_do(box, tmp_path):
    _back_up(box)
    shutil.rmtree(box.target / "keys")
    result = run("init", "--data-dir", str(tmp_path / "new"), "--restore-from", str(box.target), "--recovery-key",
                 input=box.init.recovery_key + "\n")
    assert result.exit_code != 0 and "no key document" in result.output


def test_the_recovery_drill_rebuilds_boots_and_verifies(box):
    from backup.cli import recovery_drill_appliance

    _back_up(box)
    appliance = Appliance.open(box.data_dir)
    report = recovery_drill_appliance(appliance)
    appliance.dispose()
    assert report["ok"], report
    assert report["audit"]["ok"] and {c["name"] for c in report["checks"]} >= {"boots"}
    assert keys.current().data_dir == box.data_dir  # the live appliance kept its keys
    assert not list(Path(box.root).glob("**/citadel-recovery-drill-*"))


def test_the_recovery_drill_fails_when_the_target_lost_its_keys(box):
    """A target that never received the key document, as before backups copied it."""
    from backup.disaster import recovery_drill
    from backup.targets.local import LocalTarget

    _back_up(box)
    shutil.rmtree(box.target / "keys")
    report = recovery_drill(LocalTarget(box.target), lambda d: keys.unseal_copy(keys.current(), d))
    assert not report["ok"] and "no key document" in report["error"]


def test_a_key_document_planted_on_the_target_is_passed_over(box, tmp_path, database_url):
    """Someone with the target adds a newer key document of another appliance of theirs."""
    from backup.disaster import key_document

    if database_url.startswith("postgresql"):
        pytest.skip("about the key documents only")
    _back_up(box)
    other = tmp_path / "intruder"
    keys.init_keys(other, threshold=1, holders=[PassphraseHolder("mallory", "mallory passphrase", HOLDER_KDF)],
                   share_dir=tmp_path / "intruder-shares")
    planted = box.target / "keys" / "29991231T235959999999Z-0000000000000000.json"
    planted.write_text(json.dumps({**key_document(other), "written": "2999-12-31T23:59:59Z"}))
    box.lose()
    for n, unseal in enumerate((["--recovery-key"], ["--share", box.share("alice"), "--share", box.share("bob")])):
        new = tmp_path / f"new-box-{n}"
        args = ["init", "--data-dir", str(new), "--restore-from", str(box.target), *unseal]
        answers = box.init.recovery_key if n == 0 else f"{PASSPHRASES['alice']}\n{PASSPHRASES['bob']}"
        result = run(*args, input=answers + "\n")
        assert result.exit_code == 0, result.output
        state.clear()
