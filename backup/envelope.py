"""Sealing objects for the backup medium: AES-256-GCM with bound context, Ed25519 signatures.

Every encrypted object starts with a 25-byte header (magic, kind, key version,
nonce). The associated data is that header plus the repository id, the id of
the archive that wrote the object and the object's position in it: an object
moved to another name, archive, position or repository fails to open.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from backup.errors import ArchiveDamaged
from backup.keys import BackupKeys

MAGIC = b"CTDLBK01"
HEADER = struct.Struct(">8sBI12s")
KIND_PACK = 1
KIND_MANIFEST = 2
KIND_INDEX = 3
KIND_REPORT = 4
_PURPOSE = {KIND_PACK: "pack", KIND_MANIFEST: "manifest", KIND_INDEX: "manifest", KIND_REPORT: "manifest"}
SIGNATURE_BYTES = 64


def associated_data(header: bytes, repo_id: bytes, archive_id: str, seq: int) -> bytes:
    """AES-GCM associated data: header, repository, writing archive, position."""
    archive = archive_id.encode("ascii")
    return header + repo_id + struct.pack(">H", len(archive)) + archive + struct.pack(">I", seq)


def seal(keys: BackupKeys, repo_id: bytes, kind: int, plaintext: bytes, archive_id: str, seq: int = 0) -> bytes:
    """Encrypt ``plaintext`` as object ``seq`` of kind ``kind`` written by ``archive_id``."""
    nonce = os.urandom(12)
    header = HEADER.pack(MAGIC, kind, keys.key_version, nonce)
    key = keys.subkey(_PURPOSE[kind], repo_id)
    return header + AESGCM(key).encrypt(nonce, plaintext, associated_data(header, repo_id, archive_id, seq))


def unseal(
    keys: BackupKeys,
    repo_id: bytes,
    kind: int,
    blob: bytes,
    archive_id: str,
    seq: int = 0,
    *,
    what: str = "object",
) -> bytes:
    """Decrypt and authenticate; any change to any byte raises ``ArchiveDamaged``."""
    if len(blob) < HEADER.size + 16:
        raise ArchiveDamaged(archive=archive_id, detail=f"{what} is truncated")
    magic, found_kind, version, nonce = HEADER.unpack_from(blob)
    if magic != MAGIC or found_kind != kind:
        raise ArchiveDamaged(archive=archive_id, detail=f"{what} has a wrong header")
    key = keys.subkey(_PURPOSE[kind], repo_id, version)  # WrongKey if the version is unknown
    header = blob[: HEADER.size]
    try:
        return AESGCM(key).decrypt(nonce, blob[HEADER.size :], associated_data(header, repo_id, archive_id, seq))
    except InvalidTag:
        raise ArchiveDamaged(archive=archive_id, detail=f"{what} fails authentication") from None


def sign(private: Ed25519PrivateKey, domain: str, *parts: bytes) -> bytes:
    """Ed25519 over the domain-separated, length-prefixed ``parts``."""
    return private.sign(_signed_bytes(domain, parts))


def check_signature(public: Ed25519PublicKey, signature: bytes, domain: str, *parts: bytes) -> bool:
    """Whether ``signature`` is ``public``'s over the same domain and parts."""
    try:
        public.verify(signature, _signed_bytes(domain, parts))
    except InvalidSignature:
        return False
    return True


def _signed_bytes(domain: str, parts: tuple[bytes, ...]) -> bytes:
    out = [f"citadel-backup/{domain}".encode(), b"\x00"]
    for part in parts:
        out += [struct.pack(">Q", len(part)), part]
    return b"".join(out)


def canonical_json(value: Any) -> bytes:
    """JSON with sorted keys, no whitespace, ASCII only: one spelling per value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def signed_document(keys: BackupKeys, domain: str, body: dict[str, Any]) -> bytes:
    """``{"body": ..., "signature": base64}``; the signature covers the canonical body."""
    signature = sign(keys.require_signing(), domain, canonical_json(body))
    return canonical_json(
        {
            "body": body,
            "key_version": keys.key_version,
            "signature": base64.b64encode(signature).decode(),
        }
    )


def read_signed_document(keys: BackupKeys, domain: str, raw: bytes, *, what: str) -> dict[str, Any]:
    """The body of a signed document, or ``ArchiveDamaged`` / ``WrongKey``."""
    try:
        doc = json.loads(raw)
        body, signature = doc["body"], base64.b64decode(doc["signature"], validate=True)
        canonical = base64.b64encode(signature).decode() == doc["signature"]
        version = int(doc["key_version"])
    except (ValueError, KeyError, TypeError):
        raise ArchiveDamaged(archive=what, detail="it is not a signed document") from None
    if not canonical or not isinstance(body, dict):
        raise ArchiveDamaged(archive=what, detail="it is not a signed document")
    if not check_signature(keys.verify_key_for(version), signature, domain, canonical_json(body)):
        raise ArchiveDamaged(archive=what, detail="its signature does not verify")
    return body
