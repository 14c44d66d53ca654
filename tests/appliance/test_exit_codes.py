"""Exit codes by family: a script tells "tampered" from "not found" from "bug" by the code alone."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner
from sqlalchemy.exc import OperationalError

from appliance.kernel.cli import CitadelGroup
from appliance.kernel.errors import (
    BadRequest,
    CitadelError,
    ConfigError,
    DatabaseUnavailable,
    ExitCode,
    NotFound,
    Sealed,
    ValidationFailed,
)
from appliance.keys.errors import SelfTestFailed
from audit.errors import AuditTampered, NoSuchEvent
from backup.errors import ArchiveDamaged, DrillFailed, NoRepository


def test_every_family_has_its_own_code():
    families = {NotFound: 4, BadRequest: 5, Sealed: 6, DatabaseUnavailable: 7, CitadelError: 2,
                SelfTestFailed: 3}
    assert {cls: cls.exit_code for cls in families} == families
    assert len(set(families.values())) == len(families)
    assert ExitCode.BUG not in families.values() and ExitCode.PROBLEM_FOUND not in families.values()


def test_members_of_a_family_share_its_code():
    assert NoSuchEvent.exit_code == NoRepository.exit_code == ExitCode.NOT_FOUND
    assert ValidationFailed.exit_code == ExitCode.BAD_INPUT
    assert ConfigError.exit_code == ExitCode.FAILED


@pytest.mark.parametrize("error", [AuditTampered, ArchiveDamaged, DrillFailed])
def test_a_check_that_found_a_problem_exits_1(error):
    assert error.exit_code == ExitCode.PROBLEM_FOUND == 1


def _exit_code_of(exc: BaseException) -> int:
    @click.group(cls=CitadelGroup)
    def root() -> None:
        pass

    @root.command()
    def fail() -> None:
        raise exc

    return CliRunner().invoke(root, ["fail"]).exit_code


def test_the_command_line_exits_with_the_family_code():
    assert _exit_code_of(NotFound(entity="user")) == 4
    assert _exit_code_of(Sealed()) == 6
    assert _exit_code_of(AuditTampered(detail="event 3 changed")) == 1


def test_an_unreachable_database_and_a_bug_have_their_own_codes(monkeypatch):
    monkeypatch.delenv("CITADEL_DEBUG", raising=False)
    assert _exit_code_of(OperationalError("SELECT 1", {}, Exception("connection refused"))) == 7
    assert _exit_code_of(ZeroDivisionError("division by zero")) == ExitCode.BUG == 70
