"""`appliance keys init|status|unseal|seal|rotate`, end to end through click."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.cli import main
from appliance.kernel.config import write_initial
from appliance.kernel.db import make_engine
from appliance.key_commands import keys
from appliance.keys import sealing, state
from audit.models import AuditEvent
from tests.keys.conftest import PASSPHRASES
from tests.keys.models import Base, Client

if "keys" not in main.commands:
    main.add_command(keys)


@pytest.fixture
def cli_box(tmp_path, database_url):
    data_dir = (tmp_path / "data").resolve()
    write_initial(data_dir, {"database_url": database_url, "keys": {
        "argon2_time_cost": 1, "argon2_memory_kib": 8, "argon2_parallelism": 1}})
    yield data_dir
    if (data_dir / "keys" / "keyring.json").exists():
        sealing.seal_now(data_dir)


def run(data_dir, *args, input=None):
    result = CliRunner().invoke(main, ["--data-dir", str(data_dir), "keys", *args], input=input)
    return result


def initialise(data_dir, share_dir):
    answers = "".join(f"{PASSPHRASES[n]}\n{PASSPHRASES[n]}\n" for n in ("alice", "bob", "carol"))
    result = run(data_dir, "init", "-m", "2", "--holder", "alice", "--holder", "bob",
                 "--holder", "carol", "--share-dir", str(share_dir), input=answers)
    assert result.exit_code == 0, result.output + result.stderr
    recovery = re.search(r"((?:[A-Z2-7]{4}-){13}[A-Z2-7]{4})", result.output).group(1)
    return recovery


def audit_actions(database_url) -> list[str]:
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.seq)))
    finally:
        engine.dispose()


def test_init_unseal_with_two_holders_seal_and_status(cli_box, tmp_path, database_url):
    shares = tmp_path / "shares"
    initialise(cli_box, shares)
    status = json.loads(run(cli_box, "status", "--json").output)
    assert status["sealed"] and status["threshold"] == 2

    answers = f"{shares / 'carol.share'}\nwrong passphrase\n{PASSPHRASES['carol']}\n" \
              f"{shares / 'alice.share'}\n{PASSPHRASES['alice']}\n"
    result = run(cli_box, "unseal", input=answers)
    assert result.exit_code == 0, result.output + result.stderr
    assert "does not open carol's share" in result.stderr
    assert "Unsealed." in result.output
    assert not json.loads(run(cli_box, "status", "--json").output)["sealed"]
    assert "UNSEALED" in run(cli_box, "status").output

    assert "Sealed." in run(cli_box, "seal").output
    assert json.loads(run(cli_box, "status", "--json").output)["sealed"]
    assert audit_actions(database_url) == ["keys.unseal", "keys.seal"]


def test_unseal_with_share_options_and_a_bad_file(cli_box, tmp_path):
    shares = tmp_path / "shares"
    initialise(cli_box, shares)
    (tmp_path / "junk.share").write_text("{}")
    answers = f"{PASSPHRASES['bob']}\n{shares / 'carol.share'}\n{PASSPHRASES['carol']}\n"
    result = run(cli_box, "unseal", "--share", str(tmp_path / "junk.share"),
                 "--share", str(shares / "bob.share"), input=answers)
    assert result.exit_code == 0, result.output + result.stderr
    assert "not a Citadel share file" in result.stderr
    assert state.sync(cli_box) is not None


def test_three_wrong_passphrases_stop_with_a_clear_error(cli_box, tmp_path, database_url):
    shares = tmp_path / "shares"
    initialise(cli_box, shares)
    result = run(cli_box, "unseal", "--share", str(shares / "bob.share"), input="x\ny\nz\n")
    assert result.exit_code == 2
    assert "Error: That passphrase does not open bob's share" in result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert audit_actions(database_url) == ["keys.unseal.failed"]


def test_reshare_hands_out_new_share_files(cli_box, tmp_path, database_url):
    recovery = initialise(cli_box, tmp_path / "shares")
    sealed = run(cli_box, "reshare", "-m", "1", "--holder", "dave", "--share-dir",
                 str(tmp_path / "new"), input="dave passphrase 4\ndave passphrase 4\n")
    assert sealed.exit_code == 6 and "sealed" in sealed.stderr
    run(cli_box, "unseal", "--recovery-key", input=recovery + "\n")
    result = run(cli_box, "reshare", "-m", "1", "--holder", "dave", "--share-dir",
                 str(tmp_path / "new"), "--keep-recovery-key",
                 input="short\nshort\ndave passphrase 4\ndave passphrase 4\n")
    assert result.exit_code == 0, result.output + result.stderr
    assert "at least 12 characters" in result.stderr and "RECOVERY KEY" not in result.output
    run(cli_box, "seal")
    result = run(cli_box, "unseal", "--share", str(tmp_path / "new" / "dave.share"),
                 input="dave passphrase 4\n")
    assert result.exit_code == 0, result.output + result.stderr
    assert "keys.reshare" in audit_actions(database_url)


def test_unseal_with_the_recovery_key_then_rotate(cli_box, tmp_path, database_url):
    recovery = initialise(cli_box, tmp_path / "shares")
    sealed_rotate = run(cli_box, "rotate", "fields")
    assert sealed_rotate.exit_code == 6 and "sealed" in sealed_rotate.stderr

    bad = run(cli_box, "unseal", "--recovery-key", input="AAAA-BBBB\n")
    assert bad.exit_code == 5 and "typo" in bad.stderr
    result = run(cli_box, "unseal", "--recovery-key", input=recovery.lower() + "\n")
    assert result.exit_code == 0, result.output + result.stderr
    assert "Already unsealed." in run(cli_box, "unseal").output

    engine = make_engine(database_url)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all(Client(email=f"r{i}@x.example") for i in range(12))
        session.commit()
    result = run(cli_box, "rotate", "fields", "--batch-size", "5")
    assert result.exit_code == 0, result.output + result.stderr
    assert "now at key version 2" in result.output
    status = json.loads(run(cli_box, "status", "--json").output)
    assert status["versions"]["fields"] == {"current": 2, "versions": {"1": "retired",
                                                                         "2": "active"}}
    with Session(engine) as session:
        assert sorted(c.email for c in session.scalars(select(Client)))[0] == "r0@x.example"
    engine.dispose()
    assert audit_actions(database_url)[-1] == "keys.rotate"


def test_status_of_an_appliance_without_keys(cli_box):
    result = run(cli_box, "status")
    assert result.exit_code == 0 and "No keys" in result.output
    bad_purpose = run(cli_box, "rotate", "passwords")
    assert bad_purpose.exit_code == 2
    not_initialised = run(cli_box, "seal")
    assert not_initialised.exit_code == 2 and "appliance init" in not_initialised.stderr


def test_init_refuses_a_threshold_above_the_holders(cli_box, tmp_path):
    answers = f"{PASSPHRASES['alice']}\n{PASSPHRASES['alice']}\n"
    result = run(cli_box, "init", "-m", "2", "--holder", "alice",
                 "--share-dir", str(tmp_path / "s"), input=answers)
    assert result.exit_code == 5 and "threshold" in result.stderr
