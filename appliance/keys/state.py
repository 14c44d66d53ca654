"""This process's view of the seal: the unsealed keyring, or nothing.

Every process (CLI, gunicorn worker, scheduled worker) holds at most one
unsealed ``Keyring``. ``sync`` makes it follow the kernel keyring: a process
started while sealed picks the master key up once officers unseal, and drops
it as soon as anyone seals, without a restart. ``current`` is what the field
cipher, blind indexes, attachments, backups and audit call; it raises
``Sealed`` when there is no key.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from appliance.kernel.errors import Sealed
from appliance.keys import files, kernel
from appliance.keys.errors import KernelKeyringUnavailable
from appliance.keys.keyring import Keyring, read_document
from appliance.keys.selftest import run_self_test

_lock = threading.RLock()
_keyring: Keyring | None = None
_names: dict[str, tuple[Path, str]] = {}
_listeners: list[Callable[[Path], None]] = []
log = logging.getLogger("citadel.keys")


def on_key_files_changed(listener: Callable[[Path], None]) -> None:
    """Call ``listener(data_dir)`` after the keyring or seal file changed (rotation, reshare).

    Backups use it to copy the wrapped key files to their targets at once, so a
    disaster recovery never meets archives made with a key it has no copy of.
    """
    if listener not in _listeners:
        _listeners.append(listener)


def key_files_changed(data_dir: Path) -> None:
    """Tell the listeners; one that fails is logged and never undoes the key change."""
    for listener in list(_listeners):
        try:
            listener(Path(data_dir))
        except Exception:  # noqa: BLE001 - the key change already happened and must stand
            log.exception("a listener for key file changes failed")


def current() -> Keyring:
    """The unsealed keyring of this process; ``Sealed`` if there is none."""
    keyring = _keyring
    if keyring is None:
        raise Sealed()
    return keyring


def is_sealed() -> bool:
    """Whether this process has no master key (call ``sync`` first for the latest state)."""
    return _keyring is None


def in_demo_mode() -> bool:
    """True when this process runs on the demo key (show a banner: data is not protected)."""
    keyring = _keyring
    return keyring is not None and keyring.demo


def install(keyring: Keyring) -> Keyring:
    global _keyring
    with _lock:
        _keyring = keyring
    return keyring


def clear() -> None:
    """Forget the keyring in this process (the kernel keyring is left alone)."""
    global _keyring
    with _lock:
        _keyring = None


def master_name(data_dir: Path, *, fresh: bool = False) -> str:
    """The kernel key name of this appliance's master key (``fresh``: re-read the keyring file)."""
    return _where(data_dir, fresh=fresh)[1]


def _where(data_dir: Path | str, *, fresh: bool = False) -> tuple[Path, str]:
    """The resolved data directory and its kernel key name, worked out once per process."""
    known = None if fresh else _names.get(str(data_dir))
    if known is None:
        resolved = Path(data_dir).resolve()
        appliance_id = str(read_document(resolved)["appliance_id"])
        known = (resolved, kernel.description(resolved, appliance_id))
        _names[str(data_dir)] = known
    return known


def sync(data_dir: Path) -> Keyring | None:
    """Follow the kernel keyring: unsealed if it holds this appliance's master key.

    Cheap enough for every request (two keyctl calls and a stat). Reloads the
    keyring file when another process rotated a key. Without a kernel keyring
    only a demo keyring installed in this process survives.
    """
    data_dir, name = _where(data_dir)
    with _lock:
        held = _keyring if _keyring is not None and _keyring.data_dir == data_dir else None
        try:
            master = kernel.kernel_keyring().read(name)
        except KernelKeyringUnavailable:
            if held is not None and held.demo:
                return held
            raise
        if master is None:
            if held is not None:
                clear()
            return None
        if held is not None and held.matches(master):
            if held.changed_on_disk():
                held.reload()
            return held
        run_self_test()  # never trust a broken crypto library with the key
        demo = files.demo_key_path(data_dir).exists()
        return install(Keyring.open(data_dir, master, demo=demo, source="kernel keyring"))
