"""What the playbook installs from the controller: the project's wheel, built
with `pip wheel --no-deps` from a clean copy of the tree (setuptools never
empties build/lib, so an in-place build can ship deleted modules), and a
wheelhouse of every dependency for a box without network."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXTRAS = ("cards", "targets")
EXCLUDES = ["--exclude=./.git", "--exclude=./.venv", "--exclude=./build", "--exclude=./dist",
            "--exclude=*.egg-info", "--exclude=__pycache__", "--exclude=./citadel-data",
            "--exclude=./node_modules", "--exclude=./.vagrant", "--exclude=./tests"]


def build_wheel(workspace: Path) -> Path:
    """The project's wheel; the same tree gives the same bytes (SOURCE_DATE_EPOCH)."""
    source, dist = workspace / "source", workspace / "dist"
    source.mkdir(parents=True)
    pack = subprocess.Popen(["tar", "--create", "--directory", str(REPO), *EXCLUDES, "."],
                            stdout=subprocess.PIPE)
    subprocess.run(["tar", "--extract", "--directory", str(source)], stdin=pack.stdout,
                   check=True)
    if pack.wait() != 0:
        raise RuntimeError(f"could not copy {REPO}")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--wheel-dir", str(dist), str(source)], check=True,
                   env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"},
                   stderr=subprocess.DEVNULL)
    (wheel,) = dist.glob("citadel-*.whl")
    return wheel


def build_wheelhouse(wheel: Path, house: Path) -> Path:
    """Wheels of every dependency of ``wheel`` with its extras (from PyPI or pip's cache)."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(house),
                    f"{wheel}[{','.join(EXTRAS)}]"], check=True)
    return house
