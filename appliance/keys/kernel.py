"""The unsealed master key's home: the Linux kernel's per-user keyring.

The CLI process that unseals, every gunicorn worker and the scheduled worker
run as the same user; the kernel user keyring (``@u``) is shared by all of
that user's processes, lives in kernel memory (never swapped, never on disk)
and is gone at reboot. The key is a ``user``-type key whose description is
scoped to one appliance (its id and data directory), so two appliances on one
machine never see each other's key. Reached through ``libkeyutils.so.1`` with
ctypes.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
from functools import cache
from pathlib import Path

from appliance.keys.errors import KernelKeyringUnavailable

KEY_SPEC_USER_KEYRING = -4
KEY_TYPE = b"user"
MAX_PAYLOAD = 4096
READ_BUFFER = 64  # the master key is 32 bytes; larger payloads are read again

# Possessor: everything; other processes of the same user: view, read, search.
# No group or other rights. (linux/keyctl.h permission bits)
KEY_POS_ALL = 0x3F000000
KEY_USR_VIEW, KEY_USR_READ, KEY_USR_SEARCH = 0x00010000, 0x00020000, 0x00080000
PERMISSIONS = KEY_POS_ALL | KEY_USR_VIEW | KEY_USR_READ | KEY_USR_SEARCH


def description(data_dir: Path, appliance_id: str) -> str:
    """The key's name in the keyring: one per appliance and data directory."""
    where = hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:16]
    return f"citadel:master:{appliance_id}:{where}"


class KernelKeyring:
    """Store, read and forget small secrets in the calling user's kernel keyring."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        lib.add_key.restype = ctypes.c_int32
        lib.add_key.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p,
                                ctypes.c_size_t, ctypes.c_int32]
        lib.keyctl_search.restype = ctypes.c_long
        lib.keyctl_search.argtypes = [ctypes.c_int32, ctypes.c_char_p, ctypes.c_char_p,
                                      ctypes.c_int32]
        lib.keyctl_read.restype = ctypes.c_long
        lib.keyctl_read.argtypes = [ctypes.c_int32, ctypes.c_char_p, ctypes.c_size_t]
        lib.keyctl_setperm.restype = ctypes.c_long
        lib.keyctl_setperm.argtypes = [ctypes.c_int32, ctypes.c_uint32]
        lib.keyctl_invalidate.restype = ctypes.c_long
        lib.keyctl_invalidate.argtypes = [ctypes.c_int32]

    def store(self, name: str, payload: bytes) -> None:
        """Add (or replace) the key ``name`` in the user keyring."""
        buffer = ctypes.create_string_buffer(payload, len(payload))
        serial = self._lib.add_key(KEY_TYPE, name.encode(), buffer, len(payload),
                                   KEY_SPEC_USER_KEYRING)
        ctypes.memset(buffer, 0, len(payload))
        if serial < 0:
            self._fail("add_key")
        if self._lib.keyctl_setperm(serial, PERMISSIONS) < 0:
            self._fail("keyctl_setperm")

    def read(self, name: str) -> bytes | None:
        """The payload of key ``name``, or None if there is no such key."""
        serial = self._find(name)
        if serial is None:
            return None
        capacity = READ_BUFFER
        while True:
            buffer = ctypes.create_string_buffer(capacity)
            size = self._lib.keyctl_read(serial, buffer, capacity)
            if size < 0:
                if ctypes.get_errno() in (errno.ENOKEY, errno.EKEYREVOKED, errno.EKEYEXPIRED):
                    return None
                self._fail("keyctl_read")
            if size <= capacity:
                payload = buffer.raw[:size]
                ctypes.memset(buffer, 0, capacity)
                return payload
            capacity = min(size, MAX_PAYLOAD)

    def remove(self, name: str) -> bool:
        """Invalidate key ``name`` for every process at once; False if it was not there."""
        serial = self._find(name)
        if serial is None:
            return False
        if self._lib.keyctl_invalidate(serial) < 0:
            self._fail("keyctl_invalidate")
        return True

    def _find(self, name: str) -> int | None:
        serial = self._lib.keyctl_search(KEY_SPEC_USER_KEYRING, KEY_TYPE, name.encode(), 0)
        if serial < 0:
            if ctypes.get_errno() in (errno.ENOKEY, errno.EKEYREVOKED, errno.EKEYEXPIRED):
                return None
            self._fail("keyctl_search")
        return int(serial)

    def _fail(self, call: str) -> None:
        code = ctypes.get_errno()
        raise KernelKeyringUnavailable(detail=f"{call}: {os.strerror(code)}")


@cache
def kernel_keyring() -> KernelKeyring:
    """The user keyring; ``KernelKeyringUnavailable`` if this system has none."""
    try:
        lib = ctypes.CDLL("libkeyutils.so.1", use_errno=True)
    except OSError as exc:
        raise KernelKeyringUnavailable(detail=f"cannot load libkeyutils.so.1: {exc}") from None
    return KernelKeyring(lib)


def available() -> bool:
    try:
        kernel_keyring()
    except KernelKeyringUnavailable:
        return False
    return True
