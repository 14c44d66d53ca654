"""Key files in the data directory: where they are, and writing them safely.

Every key file is written whole or not at all (temporary file, fsync, rename)
and readable by the appliance's user only (0600, in a 0700 directory).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

KEYS_DIR = "keys"
KEYRING_FILE = "keyring.json"
SEAL_FILE = "seal.json"
DEMO_KEY_FILE = "demo-master.key"
ROTATION_FILE = "rotation-{purpose}.json"


def keys_dir(data_dir: Path) -> Path:
    return Path(data_dir) / KEYS_DIR


def keyring_path(data_dir: Path) -> Path:
    return keys_dir(data_dir) / KEYRING_FILE


def seal_path(data_dir: Path) -> Path:
    return keys_dir(data_dir) / SEAL_FILE


def demo_key_path(data_dir: Path) -> Path:
    return keys_dir(data_dir) / DEMO_KEY_FILE


def rotation_path(data_dir: Path, purpose: str) -> Path:
    return keys_dir(data_dir) / ROTATION_FILE.format(purpose=purpose)


def ensure_private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with ``data``, mode 0600, durable on return."""
    ensure_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_json(path: Path, document: dict[str, Any]) -> None:
    write_private(path, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: Path) -> dict[str, Any]:
    """Parse a key file; raise ``ValueError`` if it is not a JSON object."""
    document = json.loads(path.read_text())
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    return document
