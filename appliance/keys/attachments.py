"""Encrypted attachments on disk: streaming, chunked AES-256-GCM (the STREAM construction).

File layout (integers big-endian)::

    header   0   8  magic "CTDLATT1"
             8   4  `attachments` key version
            12   4  segment size S (65536)
            16  32  random salt
    segment i       AES-256-GCM(plaintext[i*S:(i+1)*S]) || tag, i = 0..k-1 (the last may be short)
    trailer         AES-256-GCM(SHA-256(plaintext) || uint64 length) || tag  (56 bytes)

    file key  = HKDF-SHA256(attachments key, salt, frame("citadel attachment", file id))
    nonce(i)  = i as 11 bytes || 0x00 for data segments, 0x01 for the trailer (the final segment)
    AD        = header (48 bytes)

Each segment's position is in its nonce and only the trailer carries the
final flag, so reordering, dropping, duplicating or truncating segments, or
appending data, fails authentication; a file renamed to another id fails
under the other id's key. Reading checks the content hash and holds back
the last plaintext bytes until the trailer has verified.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.keys import state
from appliance.keys.errors import DecryptionFailed, UnknownKeyVersion
from appliance.keys.keyring import Keyring
from appliance.keys.primitives import TAG_BYTES, equal, frame, hkdf, random_bytes

PURPOSE = "attachments"
MAGIC = b"CTDLATT1"
SEGMENT_BYTES = 64 * 1024
_HEADER = struct.Struct(">8sII32s")
HEADER_BYTES = _HEADER.size
_TRAILER = struct.Struct(">32sQ")
TRAILER_BYTES = _TRAILER.size + TAG_BYTES


@dataclass(frozen=True)
class AttachmentInfo:
    """What to record about a stored attachment."""

    size: int
    sha256: str
    key_version: int


def _nonce(index: int, final: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


def _file_cipher(keyring: Keyring, version: int, salt: bytes, file_id: str) -> AESGCM:
    key = keyring.data_key(PURPOSE, version).key
    return AESGCM(hkdf(key, frame("citadel attachment", file_id), salt=salt))


def _read_full(reader: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes; fewer only at end of input (pipes return short reads)."""
    parts, have = [], 0
    while have < size:
        chunk = reader.read(size - have)
        if not chunk:
            break
        parts.append(chunk)
        have += len(chunk)
    return b"".join(parts)


def write_encrypted(path: Path, file_id: str, reader: BinaryIO, *,
                    keyring: Keyring | None = None) -> AttachmentInfo:
    """Encrypt everything ``reader`` yields into ``path`` (replaced atomically)."""
    keyring = keyring or state.current()
    version = keyring.current_version(PURPOSE)
    salt = random_bytes(32)
    header = _HEADER.pack(MAGIC, version, SEGMENT_BYTES, salt)
    cipher = _file_cipher(keyring, version, salt, file_id)
    digest, size, index = hashlib.sha256(), 0, 0
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as out:
            out.write(header)
            while chunk := _read_full(reader, SEGMENT_BYTES):
                digest.update(chunk)
                size += len(chunk)
                out.write(cipher.encrypt(_nonce(index, False), chunk, header))
                index += 1
            trailer = _TRAILER.pack(digest.digest(), size)
            out.write(cipher.encrypt(_nonce(index, True), trailer, header))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return AttachmentInfo(size, digest.hexdigest(), version)


def file_version(path: Path) -> int:
    """The key version an attachment file was written with."""
    with open(path, "rb") as handle:
        header = handle.read(HEADER_BYTES)
    if len(header) != HEADER_BYTES or header[:8] != MAGIC:
        raise DecryptionFailed(what="attachment")
    return int(_HEADER.unpack(header)[1])


def open_decrypted(path: Path, file_id: str, *, expected_sha256: str | None = None,
                   keyring: Keyring | None = None) -> Iterator[bytes]:
    """The plaintext of ``path``, in chunks; any tampering raises ``DecryptionFailed``.

    The header and layout are checked before this returns; each segment is
    authenticated before it is yielded, and the final chunk is yielded only
    after the trailer (length, SHA-256 and, if given, ``expected_sha256``) checks out.
    """
    keyring = keyring or state.current()
    handle = open(path, "rb")  # noqa: SIM115 - closed by the generator
    try:
        total = os.fstat(handle.fileno()).st_size
        header = handle.read(HEADER_BYTES)
        if len(header) != HEADER_BYTES:
            raise DecryptionFailed(what="attachment")
        magic, version, segment, salt = _HEADER.unpack(header)
        body = total - HEADER_BYTES - TRAILER_BYTES
        if magic != MAGIC or segment != SEGMENT_BYTES or body < 0:
            raise DecryptionFailed(what="attachment")
        if not keyring.has_version(PURPOSE, version):
            raise UnknownKeyVersion(what="attachment", version=version, purpose=PURPOSE)
        if body % (segment + TAG_BYTES) and body % (segment + TAG_BYTES) <= TAG_BYTES:
            raise DecryptionFailed(what="attachment")
        cipher = _file_cipher(keyring, version, salt, file_id)
    except BaseException:
        handle.close()
        raise
    return _segments(handle, cipher, header, body, expected_sha256)


def _segments(handle: BinaryIO, cipher: AESGCM, header: bytes, body: int,
              expected_sha256: str | None) -> Iterator[bytes]:
    with handle:
        digest, size, index, held = hashlib.sha256(), 0, 0, b""
        remaining = body
        while remaining > 0:
            sealed = handle.read(min(SEGMENT_BYTES + TAG_BYTES, remaining))
            remaining -= len(sealed)
            chunk = _open(cipher, index, False, sealed, header)
            digest.update(chunk)
            size += len(chunk)
            index += 1
            if held:
                yield held
            held = chunk
        trailer = _open(cipher, index, True, handle.read(TRAILER_BYTES), header)
        recorded_hash, recorded_size = _TRAILER.unpack(trailer)
        if recorded_size != size or not equal(recorded_hash, digest.digest()):
            raise DecryptionFailed(what="attachment")
        if expected_sha256 is not None and not equal(digest.hexdigest().encode(),
                                                     expected_sha256.lower().encode()):
            raise DecryptionFailed(what="attachment")
        if held:
            yield held


def _open(cipher: AESGCM, index: int, final: bool, sealed: bytes, header: bytes) -> bytes:
    try:
        return cipher.decrypt(_nonce(index, final), sealed, header)
    except (InvalidTag, ValueError):
        raise DecryptionFailed(what="attachment") from None


def read_decrypted(path: Path, file_id: str, **kwargs: object) -> bytes:
    """The whole plaintext at once (small files)."""
    return b"".join(open_decrypted(path, file_id, **kwargs))  # type: ignore[arg-type]


# -- rotation support ---------------------------------------------------------------

#: Functions that list (path, file id) of every stored attachment, given a database engine.
AttachmentSource = Callable[[object], Iterable[tuple[Path, str]]]
SOURCES: list[AttachmentSource] = []


def register_attachment_source(source: AttachmentSource) -> None:
    """Let `appliance keys rotate attachments` find the files a package stores."""
    if source not in SOURCES:
        SOURCES.append(source)


def reencrypt(path: Path, file_id: str, *, keyring: Keyring | None = None) -> bool:
    """Rewrite ``path`` under the current key version; False if it already was."""
    keyring = keyring or state.current()
    if file_version(path) == keyring.current_version(PURPOSE):
        return False
    plaintext = _ChunkReader(open_decrypted(path, file_id, keyring=keyring))
    write_encrypted(path, file_id, plaintext, keyring=keyring)  # type: ignore[arg-type]
    return True


class _ChunkReader:
    """A ``read(n)`` view of a chunk iterator, so a decryption can feed an encryption."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks, self._buffer = chunks, b""

    def read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out
