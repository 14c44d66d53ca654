"""The keys a backup needs, and the per-purpose subkeys derived from them.

The caller hands over one small ``BackupKeys``: the appliance's 32-byte backup
data key with its version, and the Ed25519 key pair that signs manifests,
catalogue records and verification reports. Nothing here stores a key.
Each purpose gets its own subkey (HKDF-SHA256, salted with the repository id),
so a pack key can never be used as a chunk-id key and vice versa.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from backup.errors import WrongKey

KEY_BYTES = 32
PURPOSES = ("pack", "manifest", "chunk-id", "chunker-seed")


@dataclass(frozen=True)
class BackupKeys:
    """Backup data key (+ version), signing key (optional: verify-only), verify key.

    ``previous`` maps older key versions to their data keys, and
    ``verify_keys`` older versions to their public keys, so archives made
    before a rotation can still be read and checked.
    """

    data_key: bytes
    key_version: int
    verify_key: Ed25519PublicKey
    signing_key: Ed25519PrivateKey | None = None
    previous: Mapping[int, bytes] = field(default_factory=dict)
    verify_keys: Mapping[int, Ed25519PublicKey] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for version, key in {self.key_version: self.data_key, **self.previous}.items():
            if len(key) != KEY_BYTES:
                raise WrongKey(version=version, detail=f"a data key must be {KEY_BYTES} bytes")

    @classmethod
    def generate(cls, key_version: int = 1) -> BackupKeys:
        """Fresh random keys (for a new appliance, tests and benchmarks)."""
        import os

        signing = Ed25519PrivateKey.generate()
        return cls(os.urandom(KEY_BYTES), key_version, signing.public_key(), signing)

    def data_key_for(self, version: int) -> bytes:
        """The data key of ``version`` (``WrongKey`` if it is not held)."""
        if version == self.key_version:
            return self.data_key
        try:
            return self.previous[version]
        except KeyError:
            raise WrongKey(version=version, detail="that key version is not available") from None

    def subkey(self, purpose: str, repo_id: bytes, version: int | None = None) -> bytes:
        """The 32-byte subkey for ``purpose`` in repository ``repo_id``."""
        version = self.key_version if version is None else version
        return derive(self.data_key_for(version), purpose, repo_id)

    def verify_key_for(self, version: int) -> Ed25519PublicKey:
        """The public key that verifies what ``version`` signed."""
        if version == self.key_version:
            return self.verify_key
        try:
            return self.verify_keys[version]
        except KeyError:
            raise WrongKey(version=version, detail="its public key is not available") from None

    def require_signing(self) -> Ed25519PrivateKey:
        """The signing key, or ``WrongKey`` for verify-only keys."""
        if self.signing_key is None:
            raise WrongKey(version=self.key_version, detail="writing needs the signing key")
        return self.signing_key


@lru_cache(maxsize=64)
def derive(data_key: bytes, purpose: str, repo_id: bytes) -> bytes:
    """HKDF-SHA256(data_key, salt=repo_id, info="citadel-backup/v1/<purpose>")."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown key purpose {purpose!r}")
    info = f"citadel-backup/v1/{purpose}".encode()
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=repo_id, info=info).derive(data_key)
