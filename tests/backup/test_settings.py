"""The [backup] table: defaults, schedule, and errors that say what to fix."""

from datetime import UTC, datetime

import pytest

from backup.errors import BackupNotConfigured
from backup.retention import Policy
from backup.settings import DEFAULT_FILES, BackupSettings


def test_defaults_and_schedule():
    settings = BackupSettings.from_section({"schedule": "02:30", "keep": {"daily": 3}})
    assert settings.files == DEFAULT_FILES and not settings.files_required
    assert settings.keep == Policy(daily=3, weekly=4, monthly=12, yearly=0)
    before = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    assert settings.next_run(before) == datetime(2026, 3, 2, 2, 30, tzinfo=UTC)
    after = datetime(2026, 3, 2, 2, 30, tzinfo=UTC)
    assert settings.next_run(after) == datetime(2026, 3, 3, 2, 30, tzinfo=UTC)
    assert BackupSettings.from_section({}).next_run(before) is None


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"schedul": "02:30"}, "unknown [backup] settings: schedul"),
        ({"schedule": "2:30am"}, "schedule must be HH:MM"),
        ({"files": "attachments"}, "files must be a list"),
        ({"keep": {"hourly": 3}}, "unknown [backup.keep] settings: hourly"),
        ({"targets": "s3"}, "[backup.targets] must be a TOML table"),
    ],
)
def test_bad_settings_are_explained(section, message):
    with pytest.raises(BackupNotConfigured if "keep" not in section else Exception) as err:
        BackupSettings.from_section(section)
    assert message in str(err.value)


def test_choosing_a_target():
    two = BackupSettings.from_section(
        {"targets": {"a": {"type": "local", "path": "/x"}, "b": {"type": "local", "path": "/y"}}}
    )
    with pytest.raises(BackupNotConfigured, match="set \\[backup\\] target or pass --target"):
        two.open_target()
    with pytest.raises(BackupNotConfigured, match="no target named 'c'"):
        two.open_target("c")
