"""Who signs checkpoints, and which public keys verification trusts.

A ``KeyProvider`` gives a signer (which may need an unsealed appliance) and
the public keys (which never do). The default ``file`` provider keeps a
dedicated Ed25519 key in the data directory: ``audit/signing.key`` (PKCS#8 PEM,
mode 0600, created on first use) with ``audit/signing.pub`` beside it. Another
provider registers itself with ``register_provider``; the ``keyring`` one (the appliance
keyring, ``audit.keyring_signer``) is built in. ``[audit] signer`` chooses. Public keys of
retired signers stay trusted when their PEM files are kept in
``audit/trusted/``.

A key is named by its key id: the first 16 bytes of SHA-256 over its raw
32-byte public key, in hex.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from audit.config import AuditConfig
from audit.errors import SigningKeyError

KEY_FILE = "signing.key"
PUBLIC_FILE = "signing.pub"
TRUSTED_DIR = "trusted"


def raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id_of(public_key: Ed25519PublicKey) -> str:
    return hashlib.sha256(raw_public(public_key)).digest()[:16].hex()


def verify_signature(public_key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


class AuditSigner(Protocol):
    """Signs checkpoint and segment statements."""

    @property
    def key_id(self) -> str: ...

    @property
    def public_key(self) -> Ed25519PublicKey: ...

    def sign(self, message: bytes) -> bytes: ...


class KeyProvider(Protocol):
    def signer(self) -> AuditSigner:
        """The current signer; may raise if the appliance is sealed."""
        ...

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        """Every public key whose signatures verification accepts, by key id."""
        ...


class Ed25519Signer:
    """An ``AuditSigner`` over an Ed25519 private key held in memory."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id_of(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)


class FileKeyProvider:
    """The dedicated audit key in ``<data dir>/audit/``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def for_config(cls, config: AuditConfig) -> FileKeyProvider:
        return cls(config.directory)

    @property
    def key_path(self) -> Path:
        return self.directory / KEY_FILE

    @property
    def public_path(self) -> Path:
        return self.directory / PUBLIC_FILE

    def signer(self) -> Ed25519Signer:
        """The key, created (0600) with its public half on first use."""
        if not self.key_path.exists():
            self._create()
        try:
            private = load_pem_private_key(self.key_path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise SigningKeyError(detail=f"{self.key_path} is unreadable ({exc}); restore it "
                                  "from backup, or move it aside to start a new key") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise SigningKeyError(detail=f"{self.key_path} is not an Ed25519 key")
        if not self.public_path.exists():
            _write_once(self.public_path, _public_pem(private.public_key()), 0o644)
        return Ed25519Signer(private)

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        keys = {}
        paths = [self.public_path, *sorted((self.directory / TRUSTED_DIR).glob("*.pub"))]
        for path in paths:
            if path.exists():
                key = load_public_key(path)
                keys[key_id_of(key)] = key
        return keys

    def _create(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        if _write_once(self.key_path, pem, 0o600):
            _write_once(self.public_path, _public_pem(private.public_key()), 0o644)


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise SigningKeyError(detail=f"{path} is not a readable public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(detail=f"{path} is not an Ed25519 public key")
    return key


def _public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def _write_once(path: Path, data: bytes, mode: int) -> bool:
    """Create ``path`` with ``data`` atomically; False if another process got there first."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    try:
        os.link(tmp, path)  # atomic and exclusive: never a half-written key
    except FileExistsError:
        return False
    finally:
        tmp.unlink()
    return True


def _keyring_provider(config: AuditConfig) -> KeyProvider:
    """The appliance keyring's signer, imported on first use: only a box with a keyring needs it."""
    from audit.keyring_signer import KeyringProvider

    return KeyringProvider(config)


PROVIDERS: dict[str, Callable[[AuditConfig], KeyProvider]] = {
    "file": FileKeyProvider.for_config,
    "keyring": _keyring_provider,
}


def register_provider(name: str, factory: Callable[[AuditConfig], KeyProvider]) -> None:
    """Make ``[audit] signer = "<name>"`` use ``factory``."""
    PROVIDERS[name] = factory


def provider_for(config: AuditConfig) -> KeyProvider:
    try:
        factory = PROVIDERS[config.signer]
    except KeyError:
        raise SigningKeyError(detail=f"[audit] signer = {config.signer!r} is unknown; use one of "
                              + ", ".join(sorted(PROVIDERS))) from None
    return factory(config)


def trusted_keys(config: AuditConfig) -> dict[str, Ed25519PublicKey]:
    """The provider's public keys plus any retired ones kept in ``audit/trusted/``."""
    keys = FileKeyProvider(config.directory).public_keys()
    keys.update(provider_for(config).public_keys())
    return keys
