"""The shape of the code: every module imports on its own, and the layers hold.

A module that only imports after some other module was imported first hides a cycle
that waits for the next entry point (a worker, a script, a test run in another order).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("appliance", "crm", "audit", "dlp", "backup", "provisioning")

# One interpreter; before each module, every project module is forgotten, so each one is
# imported as if it were the first thing a process imports.
ALONE = """
import importlib, sys, traceback
PACKAGES = {packages!r}
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m.split(".")[0] in PACKAGES]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ": " + traceback.format_exc(limit=3).strip().splitlines()[-1])
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def project_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "migrations" in parts or "roles" in parts or parts[-1] == "__main__":
                continue  # migrations run under Alembic; ``__main__`` runs the CLI when imported
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_module_imports_on_its_own():
    modules = project_modules()
    assert len(modules) > 150
    done = subprocess.run([sys.executable, "-c", ALONE.format(packages=PACKAGES), *modules],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]


@pytest.mark.skipif(shutil.which("lint-imports", path=str(Path(sys.executable).parent)) is None,
                    reason="import-linter is not installed")
def test_the_import_contracts_hold():
    done = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:]
