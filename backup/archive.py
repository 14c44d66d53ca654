"""Writing and reading archives: chunks, packs, the index and the manifest.

A stream (the database snapshot, a file) is cut into chunks (``backup.chunker``).
Each chunk is named by a keyed id (HMAC-SHA256 under the ``chunk-id`` subkey,
first 16 bytes), so ids reveal nothing without the key. A chunk already stored
by the parent archive is referenced, not stored again. New chunks are grouped
into packs of about 4 MiB; each pack is compressed (zstd) and sealed
(AES-256-GCM, see ``backup.envelope``) in a thread pool, since zstd and
AES-GCM release the GIL, then uploaded. The manifest, written last, says
which packs (with their size and SHA-256) and which chunk runs make each file.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import threading
from collections import deque
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any

import zstandard

from backup.chunker import Chunker, ContentChunker, PageChunker, seed_from_key
from backup.envelope import KIND_INDEX, KIND_PACK, seal, unseal
from backup.errors import ArchiveDamaged, BackupError, PackDamaged
from backup.repository import (
    FORMAT,
    Repository,
    index_name,
    new_archive_id,
    pack_name,
    utc_now,
)

CHUNK_ID_BYTES = 16
PACK_TARGET = 4 << 20
READ_BLOCK = 8 << 20
ZSTD_LEVEL = 3
_COUNT = struct.Struct(">I")
_ENTRY = struct.Struct(f">I{CHUNK_ID_BYTES}s")

Progress = Callable[[int], None]


@dataclass
class PackInfo:
    """One pack as the manifest lists it."""

    archive: str
    seq: int
    size: int = 0
    sha256: str = ""
    chunks: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "archive": self.archive,
            "seq": self.seq,
            "size": self.size,
            "sha256": self.sha256,
            "chunks": self.chunks,
        }


@dataclass
class WriteStats:
    """What writing an archive read, stored and deduplicated."""

    bytes_in: int = 0
    bytes_new: int = 0
    bytes_stored: int = 0
    chunks: int = 0
    chunks_new: int = 0
    packs_new: int = 0


@dataclass
class _OpenPack:
    index: int
    ids: list[bytes] = field(default_factory=list)
    data: list[bytes] = field(default_factory=list)
    size: int = 0


def encode_pack(ids: list[bytes], data: list[bytes]) -> bytes:
    """Pack plaintext: u32 count, count x (u32 length, 16-byte id), then the chunks."""
    table = b"".join(_ENTRY.pack(len(d), i) for i, d in zip(ids, data, strict=True))
    return _COUNT.pack(len(ids)) + table + b"".join(data)


def decode_pack(plain: bytes) -> tuple[list[bytes], list[memoryview]]:
    """The chunk ids and chunks of a pack plaintext (``ValueError`` if it does not add up)."""
    (count,) = _COUNT.unpack_from(plain)
    view = memoryview(plain)
    offset = _COUNT.size + count * _ENTRY.size
    ids, chunks = [], []
    for n in range(count):
        length, cid = _ENTRY.unpack_from(plain, _COUNT.size + n * _ENTRY.size)
        ids.append(cid)
        chunks.append(view[offset : offset + length])
        offset += length
    if offset != len(plain):
        raise ValueError("pack table does not match its data")
    return ids, chunks


class ArchiveWriter:
    """Builds one archive on a repository; ``finish`` writes the index and manifest."""

    def __init__(
        self,
        repo: Repository,
        *,
        parent: dict[str, Any] | None = None,
        workers: int = 2,
        pack_target: int = PACK_TARGET,
        level: int = ZSTD_LEVEL,
        archive_id: str | None = None,
        avoid: Collection[str] = (),
        repack: Collection[str] = (),
    ) -> None:
        """``avoid`` names packs (``archives/<id>/packs/<seq>``) never to reuse: known to be
        damaged or missing, so their chunks are stored again from the data being written.
        ``repack`` names packs mostly holding chunks nothing new needs: not reusing them
        either lets prune delete them once older archives go (space is reclaimed)."""
        self.repo = repo
        self.archive_id = archive_id or new_archive_id()
        self.healed: list[str] = []
        self.repacked: list[str] = []
        self.created = utc_now()
        self.parent_id = parent["archive_id"] if parent else None
        self.stats = WriteStats()
        self._id_key = repo.keys.subkey("chunk-id", repo.repo_id)
        self._seed = seed_from_key(repo.keys.subkey("chunker-seed", repo.repo_id))
        self._packs: list[PackInfo] = []
        self._pack_index: dict[tuple[str, int], int] = {}
        self._known: dict[bytes, tuple[int, int]] = {}
        self._parent_refs: dict[bytes, tuple[tuple[str, int], int]] = {}
        self._parent_info: dict[tuple[str, int], dict[str, Any]] = {}
        self._own_ids: dict[int, list[bytes]] = {}
        self._files: list[dict[str, Any]] = []
        self._open: _OpenPack | None = None
        self._seq = 0
        self._pack_target = pack_target
        self._compressor_level = level
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="backup-pack")
        self._inflight: deque[Future[None]] = deque()
        self._max_inflight = workers * 2
        if parent is not None:
            self._load_parent_index(parent, set(avoid), set(repack))

    # -- chunkers ----------------------------------------------------------
    def content_chunker(self) -> ContentChunker:
        return ContentChunker(self._seed)

    @staticmethod
    def page_chunker(page_size: int) -> PageChunker:
        return PageChunker(page_size)

    # -- dedup index from the parent --------------------------------------
    def _load_parent_index(self, parent: dict[str, Any], avoid: set[str], repack: set[str]) -> None:
        """Learn the chunk ids of every pack the parent uses (if keyed with today's key),
        except the packs to avoid or repack."""
        if parent.get("key_version") != self.repo.keys.key_version:
            return
        names = [pack_name(p["archive"], p["seq"]) for p in parent["packs"]]
        self.healed = sorted(n for n in names if n in avoid)
        self.repacked = sorted(n for n in names if n in repack and n not in avoid)
        wanted = {(p["archive"], p["seq"]): p for p, name in zip(parent["packs"], names, strict=True)
                  if name not in avoid and name not in repack}
        for creator in sorted({a for a, _ in wanted}):
            try:
                table = read_index(self.repo, creator)
            except (FileNotFoundError, ArchiveDamaged, BackupError):
                continue  # that part simply does not dedup
            for seq, ids in table.items():
                info = wanted.get((creator, seq))
                if info is None:
                    continue
                self._parent_info[(creator, seq)] = info
                for n, cid in enumerate(ids):
                    self._parent_refs.setdefault(cid, ((creator, seq), n))

    def _ref_parent(self, key: tuple[str, int], n: int) -> tuple[int, int]:
        index = self._pack_index.get(key)
        if index is None:
            info = self._parent_info[key]
            index = len(self._packs)
            self._packs.append(PackInfo(info["archive"], info["seq"], info["size"], info["sha256"], info["chunks"]))
            self._pack_index[key] = index
        return index, n

    # -- writing -----------------------------------------------------------
    def add_stream(
        self,
        path: str,
        role: str,
        stream: IO[bytes],
        chunker: Chunker,
        *,
        mode: int = 0o600,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Store everything ``stream`` yields as file ``path`` of the archive."""
        digest = hashlib.sha256()
        runs: list[list[int]] = []
        size = 0
        pending = b""
        while True:
            block = stream.read(READ_BLOCK)
            final = not block
            if block:
                digest.update(block)
                size += len(block)
                pending = pending + block if pending else block
            view = memoryview(pending)
            chunks, used = chunker.split(view, final)
            for chunk in chunks:
                self._add_chunk(chunk, runs)
            del chunks, view
            pending = pending[used:]
            if progress and block:
                progress(len(block))
            if final:
                break
        self.stats.bytes_in += size
        entry = {
            "path": path,
            "role": role,
            "size": size,
            "sha256": digest.hexdigest(),
            "mode": mode,
            "chunker": chunker.name,
            "runs": runs,
        }
        self._files.append(entry)
        return entry

    def _add_chunk(self, chunk: memoryview, runs: list[list[int]]) -> None:
        cid = hmac.digest(self._id_key, chunk, "sha256")[:CHUNK_ID_BYTES]
        self.stats.chunks += 1
        ref = self._known.get(cid)
        if ref is None:
            parent = self._parent_refs.get(cid)
            ref = self._ref_parent(*parent) if parent else self._append_new(cid, chunk)
            self._known[cid] = ref
        if runs:
            last = runs[-1]
            if last[0] == ref[0] and last[1] + last[2] == ref[1]:
                last[2] += 1
                return
        runs.append([ref[0], ref[1], 1])

    def _append_new(self, cid: bytes, chunk: memoryview) -> tuple[int, int]:
        if self._open is None:
            index = len(self._packs)
            self._packs.append(PackInfo(self.archive_id, self._seq))
            self._pack_index[(self.archive_id, self._seq)] = index
            self._seq += 1
            self._open = _OpenPack(index)
        pack = self._open
        pack.ids.append(cid)
        pack.data.append(bytes(chunk))
        pack.size += len(chunk)
        self.stats.chunks_new += 1
        self.stats.bytes_new += len(chunk)
        position = len(pack.ids) - 1
        if pack.size >= self._pack_target:
            self._flush()
        return pack.index, position

    def _flush(self) -> None:
        pack, self._open = self._open, None
        if pack is None or not pack.ids:
            return
        info = self._packs[pack.index]
        self._own_ids[info.seq] = pack.ids
        while len(self._inflight) >= self._max_inflight:
            self._inflight.popleft().result()
        self._inflight.append(self._pool.submit(self._seal_and_upload, info, pack))

    def _seal_and_upload(self, info: PackInfo, pack: _OpenPack) -> None:
        plain = encode_pack(pack.ids, pack.data)
        compressed = zstandard.ZstdCompressor(level=self._compressor_level).compress(plain)
        blob = seal(self.repo.keys, self.repo.repo_id, KIND_PACK, compressed, self.archive_id, info.seq)
        self.repo.target.put(pack_name(self.archive_id, info.seq), blob)
        info.size, info.sha256, info.chunks = (
            len(blob),
            hashlib.sha256(blob).hexdigest(),
            len(pack.ids),
        )

    def finish(self, extra: dict[str, Any]) -> dict[str, Any]:
        """Upload the last pack, the index and the manifest; return the manifest."""
        try:
            self._flush()
            while self._inflight:
                self._inflight.popleft().result()
        finally:
            self._pool.shutdown(wait=True)
        own = [p for p in self._packs if p.archive == self.archive_id]
        self.stats.packs_new = len(own)
        self.stats.bytes_stored = sum(p.size for p in own)
        write_index(self.repo, self.archive_id, self._own_ids)
        manifest = {
            "format": FORMAT,
            "archive_id": self.archive_id,
            "repo_id": self.repo.repo_id.hex(),
            "created": self.created,
            "finished": utc_now(),
            "parent": self.parent_id,
            "key_version": self.repo.keys.key_version,
            "packs": [p.as_dict() for p in self._packs],
            "files": self._files,
            "stats": vars(self.stats).copy(),
            **extra,
        }
        manifest["stats"]["manifest_bytes"] = self.repo.store_manifest(manifest)
        return manifest

    def abort(self) -> None:
        """Stop the sealing threads after a failure (uploaded packs stay, for prune)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def write_index(repo: Repository, archive_id: str, table: dict[int, list[bytes]]) -> None:
    """The archive's index: u32 pack count, then per pack u32 seq, u32 n, n ids."""
    parts = [_COUNT.pack(len(table))]
    for seq in sorted(table):
        ids = table[seq]
        parts += [struct.pack(">II", seq, len(ids)), *ids]
    plain = zstandard.ZstdCompressor(level=3).compress(b"".join(parts))
    repo.target.put(index_name(archive_id), seal(repo.keys, repo.repo_id, KIND_INDEX, plain, archive_id))


def read_index(repo: Repository, archive_id: str) -> dict[int, list[bytes]]:
    """The archive's index: pack sequence number -> chunk ids of that pack."""
    blob = repo.target.get(index_name(archive_id))
    plain = zstandard.ZstdDecompressor().decompress(
        unseal(repo.keys, repo.repo_id, KIND_INDEX, blob, archive_id, what="index")
    )
    (count,) = _COUNT.unpack_from(plain)
    offset, table = _COUNT.size, {}
    for _ in range(count):
        seq, n = struct.unpack_from(">II", plain, offset)
        offset += 8
        table[seq] = [plain[offset + k * CHUNK_ID_BYTES : offset + (k + 1) * CHUNK_ID_BYTES] for k in range(n)]
        offset += n * CHUNK_ID_BYTES
    return table


# -- reading -----------------------------------------------------------------
@dataclass
class ReadStats:
    """What reading an archive fetched, authenticated and produced."""

    packs: int = 0
    chunks: int = 0
    bytes_stored: int = 0
    bytes_out: int = 0


class ArchiveReader:
    """Reads an archive back, checking every pack's hash and MAC and every chunk id."""

    def __init__(
        self,
        repo: Repository,
        archive_id: str,
        *,
        workers: int = 2,
        manifest: dict[str, Any] | None = None,
    ) -> None:
        self.repo = repo
        self.archive_id = archive_id
        self.manifest = manifest or repo.load_manifest(archive_id)
        self.stats = ReadStats()
        self._workers = workers
        self._id_keys: dict[int, bytes] = {}
        self._own_ids: dict[int, list[bytes]] = {}
        self._stats_lock = threading.Lock()

    def files(self, role: str | None = None) -> list[dict[str, Any]]:
        return [f for f in self.manifest["files"] if role is None or f["role"] == role]

    def read_pack(self, index: int) -> list[memoryview]:
        """Fetch, authenticate, decompress and check one pack; its chunks.

        Any fault raises ``PackDamaged`` naming the pack, so the next backup
        knows not to reuse it (it re-uploads those chunks from the live data).
        """
        info = self.manifest["packs"][index]
        name = pack_name(info["archive"], info["seq"])

        def damaged(detail: str) -> PackDamaged:
            return PackDamaged(archive=self.archive_id, pack=name, detail=detail)

        try:
            blob = self.repo.target.get(name)
        except FileNotFoundError:
            raise damaged(f"{name} is missing") from None
        if len(blob) != info["size"] or hashlib.sha256(blob).hexdigest() != info["sha256"]:
            raise damaged(f"{name} is not the pack the manifest lists")
        try:
            compressed = unseal(
                self.repo.keys,
                self.repo.repo_id,
                KIND_PACK,
                blob,
                info["archive"],
                info["seq"],
                what=name,
            )
        except PackDamaged:
            raise
        except ArchiveDamaged as exc:
            raise damaged(str(exc.facts.get("detail", exc))) from None
        try:
            ids, chunks = decode_pack(zstandard.ZstdDecompressor().decompress(compressed))
        except (zstandard.ZstdError, ValueError, struct.error) as exc:
            raise damaged(f"{name} cannot be decoded") from exc
        if len(ids) != info["chunks"]:
            raise damaged(f"{name} has a wrong chunk count")
        key = self._id_key(blob)
        for cid, chunk in zip(ids, chunks, strict=True):
            if not hmac.compare_digest(hmac.digest(key, chunk, "sha256")[:CHUNK_ID_BYTES], cid):
                raise damaged(f"a chunk of {name} has a wrong id")
        with self._stats_lock:  # packs are read by several threads
            if info["archive"] == self.archive_id:
                self._own_ids[info["seq"]] = ids
            self.stats.packs += 1
            self.stats.chunks += len(ids)
            self.stats.bytes_stored += len(blob)
        return chunks

    def _id_key(self, blob: bytes) -> bytes:
        version = int.from_bytes(blob[9:13], "big")
        if version not in self._id_keys:
            self._id_keys[version] = self.repo.keys.subkey("chunk-id", self.repo.repo_id, version)
        return self._id_keys[version]

    def iter_file(self, entry: dict[str, Any], progress: Progress | None = None) -> Iterator[bytes]:
        """The file's bytes in order; raises ``ArchiveDamaged`` at the first bad byte."""
        runs = entry["runs"]
        order: list[int] = []
        for pack, _first, _count in runs:
            if not order or order[-1] != pack:
                order.append(pack)
        last_use = {p: i for i, p in enumerate(order)}
        first_use: dict[int, int] = {}
        for i, p in enumerate(order):
            first_use.setdefault(p, i)
        loads = list(first_use)
        digest, size = hashlib.sha256(), 0
        with ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="backup-read") as pool:
            futures: dict[int, Future[list[memoryview]]] = {}
            next_load = 0
            window = self._workers * 2
            position = -1
            for pack, first, count in runs:
                if position < 0 or order[position] != pack:
                    position += 1
                    for stale in [p for p in futures if last_use[p] < position]:
                        del futures[stale]
                # Read ahead the packs needed within the next few positions.
                while next_load < len(loads) and first_use[loads[next_load]] <= position + window:
                    if loads[next_load] not in futures:
                        futures[loads[next_load]] = pool.submit(self.read_pack, loads[next_load])
                    next_load += 1
                if pack not in futures:
                    futures[pack] = pool.submit(self.read_pack, pack)
                chunks = futures[pack].result()
                if first + count > len(chunks):
                    raise ArchiveDamaged(archive=self.archive_id, detail="a run points past its pack")
                piece = b"".join(chunks[first : first + count])
                digest.update(piece)
                size += len(piece)
                self.stats.bytes_out += len(piece)
                if progress:
                    progress(len(piece))
                yield piece
        if size != entry["size"] or digest.hexdigest() != entry["sha256"]:
            raise ArchiveDamaged(archive=self.archive_id, detail=f"{entry['path']} does not match its hash")

    def check_all_packs(self) -> None:
        """Read every pack the manifest lists, then check the archive's index."""
        with ThreadPoolExecutor(max_workers=self._workers) as pool:
            for _ in pool.map(self.read_pack, range(len(self.manifest["packs"]))):
                pass
        self.check_index()

    def check_index(self) -> None:
        """The archive's index must list exactly the chunk ids of its own packs.

        Call after its own packs were read (a restore or ``check_all_packs``).
        """
        own = {p["seq"] for p in self.manifest["packs"] if p["archive"] == self.archive_id}
        try:
            table = read_index(self.repo, self.archive_id)
        except FileNotFoundError:
            raise ArchiveDamaged(archive=self.archive_id, detail="its index is missing") from None
        except (zstandard.ZstdError, struct.error) as exc:
            raise ArchiveDamaged(archive=self.archive_id, detail="its index cannot be decoded") from exc
        missing = own - set(self._own_ids)
        for index, info in enumerate(self.manifest["packs"]):
            if info["archive"] == self.archive_id and info["seq"] in missing:
                self.read_pack(index)
        if set(table) != own or any(table[seq] != self._own_ids[seq] for seq in own):
            raise ArchiveDamaged(archive=self.archive_id, detail="its index does not match its packs")
