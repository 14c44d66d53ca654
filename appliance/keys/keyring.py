"""The keyring: per-purpose, versioned data keys wrapped by the master key.

``keys/keyring.json`` holds, for each purpose, every key version ever made,
each wrapped with AES-256-GCM under a key derived from the master key for that
purpose alone (HKDF-SHA256, info ``citadel/v1/wrap/<purpose>``). A key-check
value tells a wrong master key from a damaged file, and an HMAC over the whole
document (another derived key) detects any edit to it, such as a rolled-back
``current`` version. See docs/encryption.md for the exact format.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from appliance.keys import files
from appliance.keys.errors import (
    KeyringTampered,
    KeysNotInitialised,
    UnknownKeyVersion,
    UnknownPurpose,
    WrongMasterKey,
)
from appliance.keys.primitives import (
    KEY_BYTES,
    b64d,
    b64e,
    equal,
    frame,
    hkdf,
    hmac_sha256,
    open_sealed,
    random_bytes,
    seal,
)

FORMAT = "citadel-keyring/1"
PURPOSES = ("fields", "blind_index", "attachments", "backups", "audit_signing")
SIGNING_PURPOSES = ("backups", "audit_signing")
CHECK_BYTES = 16


@dataclass(frozen=True)
class DataKey:
    """One version of one purpose's key. The key bytes never appear in a repr."""

    purpose: str
    version: int
    key: bytes = field(repr=False)


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 key pair for one key version (audit checkpoints, backup manifests)."""

    version: int
    private_key: Ed25519PrivateKey = field(repr=False)

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()


@dataclass(frozen=True)
class BackupKeys:
    """What backups need, named as ``backup.keys.BackupKeys`` names it.

    ``data_key`` is the raw `backups` key of ``key_version`` (backups derive
    their own subkeys from it); ``previous`` holds the older versions' keys so
    archives made before a rotation stay readable; the Ed25519 pair signs manifests.
    """

    data_key: bytes = field(repr=False)
    key_version: int
    verify_key: Ed25519PublicKey
    signing_key: Ed25519PrivateKey = field(repr=False)
    previous: dict[int, bytes] = field(default_factory=dict, repr=False)


def check_purpose(purpose: str) -> str:
    if purpose not in PURPOSES:
        raise UnknownPurpose(purpose=purpose, choices=", ".join(PURPOSES))
    return purpose


def _derived(master: bytes, label: str) -> bytes:
    return hkdf(master, f"citadel/v1/{label}".encode())


def _signing_private(purpose: str, key: bytes) -> Ed25519PrivateKey:
    # An Ed25519 private key is 32 uniformly random bytes; HKDF output is one.
    return Ed25519PrivateKey.from_private_bytes(hkdf(key, f"citadel/v1/ed25519/{purpose}".encode()))


def _public_b64(purpose: str, key: bytes) -> str:
    public = _signing_private(purpose, key).public_key()
    return b64e(public.public_bytes(Encoding.Raw, PublicFormat.Raw))


def _canonical(document: dict[str, Any]) -> bytes:
    body = {k: v for k, v in document.items() if k != "mac"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextmanager
def file_lock(data_dir: Path, name: str, *, wait: bool = True) -> Iterator[bool]:
    """An advisory lock shared by every process on this data directory.

    Yields False instead of waiting when ``wait`` is False and another process holds it.
    """
    path = files.ensure_private_dir(files.keys_dir(data_dir)) / f".{name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


class Keyring:
    """The unwrapped keyring of one appliance, in this process's memory only."""

    def __init__(self, data_dir: Path, master: bytes, document: dict[str, Any], *,
                 demo: bool = False) -> None:
        self.data_dir = Path(data_dir).resolve()
        self._master = master
        self._document = document
        self._keys: dict[tuple[str, int], bytes] = {}
        self._ciphers: dict[tuple[str, int], AESGCM] = {}
        self._subkeys: dict[tuple[str, int, bytes], bytes] = {}
        self.demo = demo
        self._stamp = _stamp(files.keyring_path(self.data_dir))

    # -- opening and creating -------------------------------------------------

    @classmethod
    def open(cls, data_dir: Path, master: bytes, *, demo: bool = False,
             source: str = "master key") -> Keyring:
        """Load ``keys/keyring.json`` and prove ``master`` opens it."""
        path = files.keyring_path(data_dir)
        document = read_document(data_dir)
        check = _check_value(master, document.get("appliance_id", ""))
        if not equal(check, b64d(document.get("check", ""))):
            raise WrongMasterKey(source=source)
        if not equal(hmac_sha256(_derived(master, "keyring-mac"), _canonical(document)),
                     b64d(document.get("mac", ""))):
            raise KeyringTampered(path=path, detail="its integrity code does not match")
        return cls(data_dir, master, document, demo=demo)

    @classmethod
    def create(cls, data_dir: Path, master: bytes, appliance_id: str) -> Keyring:
        """Write a new keyring with version 1 of every purpose."""
        document: dict[str, Any] = {
            "format": FORMAT,
            "appliance_id": appliance_id,
            "check": b64e(_check_value(master, appliance_id)),
            "purposes": {},
        }
        keyring = cls(data_dir, master, document)
        for purpose in PURPOSES:
            keyring._new_version(purpose)
        keyring._save()
        return keyring

    # -- reading keys ---------------------------------------------------------

    @property
    def appliance_id(self) -> str:
        return str(self._document["appliance_id"])

    def matches(self, master: bytes) -> bool:
        return equal(master, self._master)

    def current_version(self, purpose: str) -> int:
        return int(self._entry(purpose)["current"])

    def versions(self, purpose: str) -> list[int]:
        return sorted(int(v) for v in self._entry(purpose)["versions"])

    def has_version(self, purpose: str, version: int) -> bool:
        """Whether ``version`` exists, re-reading the file if another process may have made it."""
        if str(version) in self._entry(purpose)["versions"]:
            return True
        if self.changed_on_disk():
            self.reload()
        return str(version) in self._entry(purpose)["versions"]

    def version_info(self, purpose: str) -> dict[int, dict[str, str]]:
        """Per version: when it was created and whether it is active or retired."""
        return {int(v): {"created": e["created"], "state": e["state"]}
                for v, e in self._entry(purpose)["versions"].items()}

    def data_key(self, purpose: str, version: int | None = None) -> DataKey:
        """The key of ``purpose`` at ``version`` (default: the current one)."""
        version = self.current_version(purpose) if version is None else int(version)
        cached = self._keys.get((purpose, version))
        if cached is None:
            cached = self._unwrap(purpose, version)
            self._keys[(purpose, version)] = cached
        return DataKey(purpose, version, cached)

    def aead(self, purpose: str, version: int) -> AESGCM:
        """A ready AES-256-GCM cipher for one key version (built once, reused)."""
        cipher = self._ciphers.get((purpose, version))
        if cipher is None:
            cipher = AESGCM(self.data_key(purpose, version).key)
            self._ciphers[(purpose, version)] = cipher
        return cipher

    def subkey(self, purpose: str, version: int, label: bytes) -> bytes:
        """A key derived (HKDF) from one data key for one narrower use, cached."""
        cached = self._subkeys.get((purpose, version, label))
        if cached is None:
            cached = hkdf(self.data_key(purpose, version).key, label)
            self._subkeys[(purpose, version, label)] = cached
        return cached

    def audit_signing_key(self, version: int | None = None) -> SigningKey:
        """The Ed25519 key that signs audit checkpoints."""
        key = self.data_key("audit_signing", version)
        return SigningKey(key.version, _signing_private("audit_signing", key.key))

    def backup_keys(self, version: int | None = None) -> BackupKeys:
        """The backups data key and manifest signing key, plus every older data key."""
        key = self.data_key("backups", version)
        signing = _signing_private("backups", key.key)
        previous = {v: self.data_key("backups", v).key
                    for v in self.versions("backups") if v != key.version}
        return BackupKeys(key.key, key.version, signing.public_key(), signing, previous)

    def public_keys(self, purpose: str) -> dict[int, Ed25519PublicKey]:
        return public_keys_in(self._document, purpose)

    # -- changing the keyring (rotation) -------------------------------------

    def add_version(self, purpose: str) -> int:
        """Make a new current version of ``purpose``; older ones stay readable."""
        with file_lock(self.data_dir, "keyring"):
            self.reload()
            version = self._new_version(purpose)
            self._save()
        _changed(self.data_dir)
        return version

    def retire(self, purpose: str, versions: list[int]) -> None:
        """Mark old versions as no longer used for new data (they still decrypt)."""
        with file_lock(self.data_dir, "keyring"):
            self.reload()
            entry = self._entry(purpose)
            for version in versions:
                if version != int(entry["current"]):
                    entry["versions"][str(version)]["state"] = "retired"
            self._save()
        _changed(self.data_dir)

    def changed_on_disk(self) -> bool:
        return _stamp(files.keyring_path(self.data_dir)) != self._stamp

    def reload(self) -> None:
        """Re-read the keyring file (another process may have rotated a key)."""
        fresh = Keyring.open(self.data_dir, self._master, demo=self.demo)
        self._document, self._stamp = fresh._document, fresh._stamp

    # -- internals ------------------------------------------------------------

    def _entry(self, purpose: str) -> dict[str, Any]:
        check_purpose(purpose)
        try:
            return self._document["purposes"][purpose]
        except KeyError:
            raise KeyringTampered(path=files.keyring_path(self.data_dir),
                                  detail=f"it has no `{purpose}` keys") from None

    def _wrap_ad(self, purpose: str, version: int) -> bytes:
        return frame(FORMAT, self.appliance_id, purpose, version)

    def _unwrap(self, purpose: str, version: int) -> bytes:
        if not self.has_version(purpose, version):
            raise UnknownKeyVersion(what="value", version=version, purpose=purpose)
        entry = self._entry(purpose)["versions"][str(version)]
        return open_sealed(_derived(self._master, f"wrap/{purpose}"), b64d(entry["wrapped"]),
                           self._wrap_ad(purpose, version), what=f"{purpose} key")

    def _new_version(self, purpose: str) -> int:
        purposes = self._document["purposes"]
        entry = purposes.setdefault(check_purpose(purpose), {"current": 0, "versions": {}})
        version = max((int(v) for v in entry["versions"]), default=0) + 1
        key = random_bytes(KEY_BYTES)
        record = {
            "created": _now(),
            "state": "active",
            "wrapped": b64e(seal(_derived(self._master, f"wrap/{purpose}"), key,
                                 self._wrap_ad(purpose, version))),
        }
        if purpose in SIGNING_PURPOSES:
            record["public"] = _public_b64(purpose, key)
        entry["versions"][str(version)] = record
        entry["current"] = version
        self._keys[(purpose, version)] = key
        return version

    def _save(self) -> None:
        self._document["mac"] = b64e(hmac_sha256(_derived(self._master, "keyring-mac"),
                                                 _canonical(self._document)))
        path = files.keyring_path(self.data_dir)
        files.write_json(path, self._document)
        self._stamp = _stamp(path)


def _changed(data_dir: Path) -> None:
    from appliance.keys.state import key_files_changed  # state imports this module

    key_files_changed(data_dir)


def _check_value(master: bytes, appliance_id: str) -> bytes:
    return hmac_sha256(_derived(master, "check"), frame("citadel key check", appliance_id))[
        :CHECK_BYTES]


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def read_document(data_dir: Path) -> dict[str, Any]:
    """The keyring file as stored (wrapped keys only); raises if it is missing or unreadable."""
    return read_key_file(data_dir, files.keyring_path(data_dir), FORMAT)


def read_key_file(data_dir: Path, path: Path, expected_format: str) -> dict[str, Any]:
    """One of the key directory's JSON files, of the format named; a missing file means
    keys were never set up, an unreadable or foreign one that somebody changed it."""
    try:
        document = files.read_json(path)
    except FileNotFoundError:
        raise KeysNotInitialised(data_dir=data_dir) from None
    except ValueError as exc:
        raise KeyringTampered(path=path, detail=f"it is not valid JSON: {exc}") from None
    if document.get("format") != expected_format:
        raise KeyringTampered(path=path, detail=f"unknown format {document.get('format')!r}")
    return document


def public_keys_in(document: dict[str, Any], purpose: str) -> dict[int, Ed25519PublicKey]:
    """The Ed25519 public keys of a signing purpose, readable while sealed.

    They are covered by the keyring's integrity code only when checked
    unsealed; pin them elsewhere (the audit anchor does) to trust them sealed.
    """
    if purpose not in SIGNING_PURPOSES:
        raise UnknownPurpose(purpose=purpose, choices=", ".join(SIGNING_PURPOSES))
    versions = document["purposes"][purpose]["versions"]
    return {int(v): Ed25519PublicKey.from_public_bytes(b64d(e["public"]))
            for v, e in versions.items()}


def read_public_keys(data_dir: Path, purpose: str) -> dict[int, Ed25519PublicKey]:
    """Public keys of ``purpose`` (``audit_signing`` or ``backups``), without unsealing."""
    return public_keys_in(read_document(data_dir), purpose)
