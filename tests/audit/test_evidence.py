"""Proofs and evidence bundles, checked by the standalone verifier as a third party would."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from audit.errors import NoSuchEvent, NotCheckpointed
from audit.evidence import bundle, consistency, prove
from audit.merkle import verify_consistency, verify_inclusion
from tests.audit.conftest import T0

TOOL = Path(__file__).resolve().parents[2] / "tools" / "verify_evidence.py"


def check(path: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the verifier in a clean interpreter that cannot import the appliance."""
    return subprocess.run([sys.executable, "-I", str(TOOL), str(path), *args],
                          capture_output=True, text=True, cwd=path.parent, timeout=60)


@pytest.fixture
def log(engine, config, filled):
    filled(120, 40, tail=6)


def test_inclusion_and_consistency_proofs(log, engine, config):
    with Session(engine) as session:
        proof = prove(session, config, 77)
        assert proof["tree_size"] == 120
        assert verify_inclusion(77, 120, bytes.fromhex(proof["leaf_hash"]),
                                [bytes.fromhex(p) for p in proof["proof"]],
                                bytes.fromhex(proof["checkpoint"]["root"]))
        assert prove(session, config, 3, size=40)["tree_size"] == 40
        with pytest.raises(NotCheckpointed):
            prove(session, config, 122)
        with pytest.raises(NoSuchEvent):
            prove(session, config, 5000)
        result = consistency(session, config, 40, 120)
    assert result["valid"]
    assert verify_consistency(40, 120, [bytes.fromhex(p) for p in result["proof"]],
                              bytes.fromhex(result["old"]["root"]),
                              bytes.fromhex(result["new"]["root"]))


def write_bundle(engine, config, tmp_path, **selection) -> Path:
    with Session(engine) as session:
        document = bundle(session, config, **selection)
    path = tmp_path / "evidence.json"
    path.write_text(json.dumps(document, indent=1))
    return path


def test_bundle_by_events_holds_for_a_third_party(log, engine, config, tmp_path):
    path = write_bundle(engine, config, tmp_path, seqs=[5, 77, 124])  # 124: not yet covered
    document = json.loads(path.read_text())
    assert [e["seq"] for e in document["events"]] == [5, 77, 124]
    assert document["checkpoint"]["size"] == 126  # a checkpoint was signed for the bundle
    result = check(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "HOLDS" in result.stdout
    key = config.directory / "signing.pub"
    assert check(path, "--key", str(key)).returncode == 0
    assert check(path, "--key-id", "0" * 32).returncode == 1


def test_bundle_by_user_and_time(log, engine, config, tmp_path):
    path = write_bundle(engine, config, tmp_path, user="user2", since=T0,
                        until=T0 + timedelta(minutes=60))
    events = json.loads(path.read_text())["events"]
    assert [e["seq"] for e in events] == list(range(2, 60, 5))
    assert {e["event"]["user"] for e in events} == {"user2"}
    assert check(path).returncode == 0


@pytest.mark.parametrize("edit", [
    lambda d: d["events"][0]["event"].update(user="mallory"),
    lambda d: d["events"][0].update(canonical=d["events"][0]["canonical"].replace(
        '"count":1', '"count":2')),
    lambda d: d["events"][1]["proof"].reverse(),
    lambda d: d["events"].pop(),
    lambda d: d["checkpoint"].update(root="00" * 32),
    lambda d: d["checkpoint"].update(size=d["checkpoint"]["size"] + 1),
    lambda d: d["query"].update(events=[1, 2]),
    lambda d: d.update(sig=d["sig"][:-4] + "AAA="),
])
def test_any_edit_to_a_bundle_is_caught(log, engine, config, tmp_path, edit):
    path = write_bundle(engine, config, tmp_path, seqs=[1, 21, 41])
    document = json.loads(path.read_text())
    edited = copy.deepcopy(document)
    edit(edited)
    path.write_text(json.dumps(edited))
    result = check(path)
    assert result.returncode == 1, result.stdout
    assert "FAIL" in result.stdout


def test_unreadable_bundles(tmp_path):
    path = tmp_path / "b.json"
    path.write_text("{not json")
    assert check(path).returncode == 2
    path.write_text(json.dumps({"format": "something else"}))
    assert check(path).returncode == 2


def test_the_tool_imports_nothing_from_the_appliance():
    source = TOOL.read_text()
    for package in ("audit", "appliance", "crm", "dlp", "backup"):
        assert f"from {package}" not in source and f"import {package}" not in source
