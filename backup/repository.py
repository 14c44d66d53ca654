"""A backup repository on one target: its identity, layout, manifests and catalogue.

Layout (all names relative to the target)::

    config                              signed: format, repository id
    archives/<archive-id>/packs/<seq>   encrypted packs of chunks written by that archive
    archives/<archive-id>/index         encrypted chunk ids of those packs (for dedup)
    archives/<archive-id>/manifest      encrypted + signed: files, packs, table digests
    catalogue/<archive-id>.json         signed record: status (verified / failed) + report
    tmp/                                uploads in flight

Everything a restore needs is on the target; the keys are the only outside input.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import zstandard

from backup.envelope import (
    HEADER,
    KIND_MANIFEST,
    KIND_REPORT,
    SIGNATURE_BYTES,
    check_signature,
    read_signed_document,
    seal,
    sign,
    signed_document,
    unseal,
)
from backup.errors import ArchiveDamaged, ArchiveNotFound, NoRepository, RepositoryConfigMissing, WrongKey
from backup.keys import BackupKeys
from backup.targets.base import Target

FORMAT = 1
CONFIG = "config"
STATUS_VERIFIED = "verified"
STATUS_FAILED = "failed"
#: the drill could not run to the end for a reason outside the archive (a full disk,
#: an unreachable target or scratch server): nothing is known against the archive
STATUS_UNVERIFIED = "could-not-verify"
_ARCHIVE_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")


def new_archive_id(now: datetime | None = None) -> str:
    """``YYYYMMDDTHHMMSSZ-xxxxxxxx``: sorts by time, unique by its random tail."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def is_archive_id(text: str) -> bool:
    return bool(_ARCHIVE_ID.match(text))


def pack_name(archive_id: str, seq: int) -> str:
    return f"archives/{archive_id}/packs/{seq:06d}"


def index_name(archive_id: str) -> str:
    return f"archives/{archive_id}/index"


def manifest_name(archive_id: str) -> str:
    return f"archives/{archive_id}/manifest"


def catalogue_name(archive_id: str) -> str:
    return f"catalogue/{archive_id}.json"


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def key_check(keys: BackupKeys, repo_id: bytes) -> str:
    """A value that shows the data key is right without revealing anything about it."""
    return hmac.new(keys.subkey("manifest", repo_id), b"citadel-backup key check", "sha256").hexdigest()[:32]


def holds_repository_objects(target: Target) -> bool:
    """Whether ``target`` holds archives or catalogue records (with or without a config)."""
    return bool(target.list("archives/") or target.list("catalogue/"))


@dataclass(frozen=True)
class CatalogueRecord:
    """One signed line of the catalogue: an archive and what its drill found."""

    archive_id: str
    status: str
    created: str
    finished: str
    size: int
    report: dict[str, Any]

    @property
    def good(self) -> bool:
        return self.status == STATUS_VERIFIED

    @property
    def created_at(self) -> datetime:
        return datetime.strptime(self.created, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)

    def as_dict(self) -> dict[str, Any]:
        return {
            "archive_id": self.archive_id,
            "status": self.status,
            "created": self.created,
            "finished": self.finished,
            "size": self.size,
            "report": self.report,
        }


class Repository:
    """Access to one target's repository with one set of keys."""

    def __init__(self, target: Target, keys: BackupKeys, repo_id: bytes) -> None:
        self.target = target
        self.keys = keys
        self.repo_id = repo_id

    @classmethod
    def open(cls, target: Target, keys: BackupKeys, *, create: bool = False) -> Repository:
        """Open the repository on ``target``; with ``create``, start one if there is none."""
        try:
            raw = target.get(CONFIG)
        except FileNotFoundError:
            if not create:
                raise NoRepository(target=target.label) from None
            if holds_repository_objects(target):
                # a new config would make every archive there unreadable, and prune would
                # then delete them: a lost config is never a reason to start over
                raise RepositoryConfigMissing(target=target.label) from None
            return cls.initialise(target, keys)
        try:
            body = read_signed_document(keys, "config", raw, what="repository config")
        except ArchiveDamaged:
            raise WrongKey(
                version=keys.key_version,
                detail="the repository config is not signed by this appliance",
            ) from None
        if body.get("format") != FORMAT:
            raise ArchiveDamaged(archive="repository", detail=f"unknown format {body.get('format')}")
        repo_id = bytes.fromhex(body["repo_id"])
        expected = body.get("key_check", {}).get(str(keys.key_version))
        if expected and not hmac.compare_digest(expected, key_check(keys, repo_id)):
            raise WrongKey(
                version=keys.key_version,
                detail="it is not the data key this repository was made with",
            )
        return cls(target, keys, repo_id)

    @classmethod
    def initialise(cls, target: Target, keys: BackupKeys) -> Repository:
        """Write a new repository config (a new repository id) on ``target``, replacing any."""
        repo_id = os.urandom(16)
        body = {
            "format": FORMAT,
            "repo_id": repo_id.hex(),
            "created": utc_now(),
            "key_check": {str(keys.key_version): key_check(keys, repo_id)},
        }
        target.put(CONFIG, signed_document(keys, "config", body))
        return cls(target, keys, repo_id)

    # -- manifests ---------------------------------------------------------
    def store_manifest(self, manifest: dict[str, Any]) -> int:
        """Encrypt, sign and upload the manifest; its stored size."""
        archive_id = manifest["archive_id"]
        plain = zstandard.ZstdCompressor(level=3).compress(json.dumps(manifest).encode())
        blob = seal(self.keys, self.repo_id, KIND_MANIFEST, plain, archive_id)
        signature = sign(self.keys.require_signing(), "manifest", self.repo_id, archive_id.encode(), blob)
        self.target.put(manifest_name(archive_id), blob + signature)
        return len(blob) + len(signature)

    def load_manifest(self, archive_id: str) -> dict[str, Any]:
        """The archive's manifest, its signature and encryption checked."""
        try:
            raw = self.target.get(manifest_name(archive_id))
        except FileNotFoundError:
            raise ArchiveNotFound(archive=archive_id, target=self.target.label) from None
        blob, signature = raw[:-SIGNATURE_BYTES], raw[-SIGNATURE_BYTES:]
        version = int.from_bytes(blob[9:13], "big") if len(blob) > HEADER.size else -1
        if not check_signature(
            self.keys.verify_key_for(version),
            signature,
            "manifest",
            self.repo_id,
            archive_id.encode(),
            blob,
        ):
            raise ArchiveDamaged(archive=archive_id, detail="the manifest signature does not verify")
        plain = unseal(self.keys, self.repo_id, KIND_MANIFEST, blob, archive_id, what="manifest")
        manifest = json.loads(zstandard.ZstdDecompressor().decompress(plain))
        if manifest.get("archive_id") != archive_id or manifest.get("format") != FORMAT:
            raise ArchiveDamaged(archive=archive_id, detail="the manifest names another archive")
        return manifest

    def archive_ids(self) -> list[str]:
        """Archives whose manifest was written (finished uploads), oldest first."""
        ids = set()
        for name in self.target.list("archives/"):
            parts = name.split("/")
            if len(parts) == 3 and parts[2] == "manifest" and is_archive_id(parts[1]):
                ids.add(parts[1])
        return sorted(ids)

    def started_archive_ids(self) -> list[str]:
        """Every archive with at least one object, finished or not."""
        return sorted({n.split("/")[1] for n in self.target.list("archives/") if is_archive_id(n.split("/")[1])})

    # -- catalogue ---------------------------------------------------------
    def record(self, archive_id: str, status: str, created: str, size: int, report: dict[str, Any]) -> CatalogueRecord:
        """Write the archive's signed catalogue record (after its drill).

        The drill's report names tables and files and holds their digests, so
        it is stored encrypted; the record itself shows only status and times.
        """
        record = CatalogueRecord(archive_id, status, created, utc_now(), size, report)
        sealed = seal(self.keys, self.repo_id, KIND_REPORT, json.dumps(report).encode(), archive_id)
        body = {
            "repo_id": self.repo_id.hex(),
            **record.as_dict(),
            "report": base64.b64encode(sealed).decode(),
        }
        self.target.put(catalogue_name(archive_id), signed_document(self.keys, "catalogue", body))
        return record

    def catalogue(self) -> tuple[list[CatalogueRecord], list[str]]:
        """Signed records, oldest first, and the names of records that failed their check."""
        records, bad = [], []
        for name in self.target.list("catalogue/"):
            archive_id = name.removeprefix("catalogue/").removesuffix(".json")
            try:
                body = read_signed_document(self.keys, "catalogue", self.target.get(name), what=name)
            except (ArchiveDamaged, WrongKey, FileNotFoundError):
                bad.append(name)
                continue
            if body.get("archive_id") != archive_id or body.get("repo_id") != self.repo_id.hex():
                bad.append(name)
                continue
            try:
                sealed = base64.b64decode(body["report"], validate=True)
                report = json.loads(unseal(self.keys, self.repo_id, KIND_REPORT, sealed, archive_id, what="report"))
            except (ArchiveDamaged, WrongKey, ValueError, KeyError):
                bad.append(name)
                continue
            records.append(
                CatalogueRecord(
                    body["archive_id"], body["status"], body["created"], body["finished"], body["size"], report
                )
            )
        return sorted(records, key=lambda r: (r.created, r.archive_id)), bad

    def good_archives(self) -> list[CatalogueRecord]:
        """Archives whose drill passed and whose manifest is still there, oldest first."""
        present = set(self.archive_ids())
        return [r for r in self.catalogue()[0] if r.good and r.archive_id in present]

    def resolve(self, text: str) -> str:
        """An archive id from a unique prefix of it (or ``latest``)."""
        ids = self.archive_ids()
        if text == "latest":
            good = self.good_archives()
            if not good:
                raise ArchiveNotFound(archive="latest (no verified archive)", target=self.target.label)
            return good[-1].archive_id
        matches = [i for i in ids if i.startswith(text)]
        if len(matches) != 1:
            raise ArchiveNotFound(archive=text, target=self.target.label)
        return matches[0]
