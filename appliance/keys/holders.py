"""Share holders: who keeps each share of the unseal key, and how it is protected.

A holder turns a share into a sealed blob at initialisation, and back into the
share at unseal time after asking its owner for a secret (a PIN, a passphrase).
Officer smart cards are one kind of holder; passphrase-protected share files
are another. New kinds register a factory with ``register_holder_kind``.

Passphrase blobs (all integers big-endian)::

    0   4  magic "CPS1"
    4   4  Argon2id time cost (iterations)
    8   4  Argon2id memory cost, KiB
    12  1  Argon2id parallelism
    13 16  salt
    29 12  AES-GCM nonce
    41 48  AES-256-GCM(share, AD = bytes 0..40 + framed holder name) + 16-byte tag
"""

from __future__ import annotations

import struct
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from argon2.low_level import Type, hash_secret_raw

from appliance.kernel.errors import BadRequest
from appliance.keys.errors import BadShareFile, DecryptionFailed, WrongPassphrase
from appliance.keys.primitives import NONCE_BYTES, frame, open_sealed, random_bytes, seal

#: Asks the holder's owner for a secret: called with a prompt, returns what was typed.
Ask = Callable[[str], str]

MAGIC = b"CPS1"
SALT_BYTES = 16
_HEADER = struct.Struct(">4sIIB16s")
MAX_MEMORY_KIB = 4 * 1024 * 1024  # refuse blobs that would make unsealing exhaust memory


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost parameters (RFC 9106's second recommended option by default)."""

    time_cost: int = 3
    memory_kib: int = 64 * 1024
    parallelism: int = 4

    @classmethod
    def from_settings(cls, section: Mapping[str, Any]) -> KdfParams:
        """From ``[keys]``: ``argon2_time_cost``, ``argon2_memory_kib``, ``argon2_parallelism``."""
        default = cls()
        return cls(
            time_cost=int(section.get("argon2_time_cost", default.time_cost)),
            memory_kib=int(section.get("argon2_memory_kib", default.memory_kib)),
            parallelism=int(section.get("argon2_parallelism", default.parallelism)),
        )

    def derive(self, secret: str, salt: bytes) -> bytes:
        normalised = unicodedata.normalize("NFC", secret).encode()
        return hash_secret_raw(normalised, salt, self.time_cost, self.memory_kib,
                               self.parallelism, 32, Type.ID)


class ShareHolder(ABC):
    """Someone who keeps one share and can give it back on request."""

    #: Stored in the share envelope so unsealing knows which kind of holder to ask.
    kind: ClassVar[str]

    def __init__(self, name: str) -> None:
        if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise BadRequest(detail=f"holder name {name!r}: use letters, digits, '-', '_' or '.'")
        self.name = name

    @abstractmethod
    def seal(self, share: bytes) -> bytes:
        """Protect ``share`` so that only this holder can give it back."""

    @abstractmethod
    def open(self, blob: bytes, ask: Ask) -> bytes:
        """Ask the owner for their secret and return the share sealed in ``blob``."""


class PassphraseHolder(ShareHolder):
    """A share encrypted under a key derived from the holder's passphrase (Argon2id)."""

    kind = "passphrase"

    def __init__(self, name: str, passphrase: str | None = None,
                 kdf: KdfParams | None = None) -> None:
        super().__init__(name)
        self._passphrase = passphrase
        self.kdf = kdf or KdfParams()

    def seal(self, share: bytes) -> bytes:
        if not self._passphrase:
            raise ValueError(f"{self.name} has no passphrase to seal a share with")
        salt = random_bytes(SALT_BYTES)
        header = _HEADER.pack(MAGIC, self.kdf.time_cost, self.kdf.memory_kib,
                              self.kdf.parallelism, salt)
        key = self.kdf.derive(self._passphrase, salt)
        return header + seal(key, share, self._ad(header))

    def open(self, blob: bytes, ask: Ask) -> bytes:
        if len(blob) < _HEADER.size + NONCE_BYTES or blob[:4] != MAGIC:
            raise BadShareFile(path=f"{self.name}'s share", detail="it is not a passphrase share")
        header = blob[:_HEADER.size]
        _magic, time_cost, memory_kib, parallelism, salt = _HEADER.unpack(header)
        if not (1 <= time_cost <= 64 and 8 <= memory_kib <= MAX_MEMORY_KIB and parallelism >= 1):
            raise BadShareFile(path=f"{self.name}'s share", detail="its KDF parameters are invalid")
        passphrase = self._passphrase or ask(f"Passphrase for {self.name}'s share")
        key = KdfParams(time_cost, memory_kib, parallelism).derive(passphrase, salt)
        try:
            return open_sealed(key, blob[_HEADER.size:], self._ad(header), what="share")
        except DecryptionFailed:
            raise WrongPassphrase(holder=self.name) from None

    def _ad(self, header: bytes) -> bytes:
        return header + frame("citadel share holder", self.name)


_KINDS: dict[str, Callable[[str], ShareHolder]] = {"passphrase": PassphraseHolder}


def register_holder_kind(kind: str, factory: Callable[[str], ShareHolder]) -> None:
    """Let unsealing open shares of ``kind`` (e.g. ``"card"``) with ``factory(name)``."""
    _KINDS[kind] = factory


def holder_for(kind: str, name: str) -> ShareHolder:
    """A holder able to open a share of ``kind`` held by ``name``."""
    try:
        return _KINDS[kind](name)
    except KeyError:
        known = ", ".join(sorted(_KINDS))
        raise BadShareFile(path=f"{name}'s share", detail=f"its holder kind `{kind}` is not "
                           f"available here ({known})") from None
