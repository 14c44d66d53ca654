"""Problems the attack suite found in code outside its reach, pinned until they are fixed
(strict: the test fails once the problem is gone, so this file shrinks)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.xfail(strict=True, reason="backup.cli and appliance.cli import each other: a process "
                                       "that has not imported appliance.cli first gets a 500 on "
                                       "GET /backups")
def test_backup_views_import_without_the_command_line_loaded_first():
    done = subprocess.run([sys.executable, "-c", "import backup.cli"], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr[-300:]
