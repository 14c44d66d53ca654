"""Cutting a stream into chunks small enough to deduplicate between backups.

Two ways, chosen per stream (measurements in docs/backup-format.md):

* ``PageChunker``: fixed-size chunks aligned on the SQLite page size. A SQLite
  snapshot changes in place page by page, so aligned pages dedup best.
* ``ContentChunker``: FastCDC content-defined boundaries (~4 KiB average) for
  everything else (pg_dump output, attachments): an insertion shifts bytes but
  the boundaries follow the content. Its gear table is XORed with a secret
  seed derived from the backup key, so chunk sizes reveal nothing about content.

Both expose ``split(buf, final)``: the chunks found in ``buf`` and how many
bytes they cover; the rest must be fed again with the next bytes.
"""

from __future__ import annotations

from typing import Protocol

from pyfastcdc import FastCDC

PAGE_SIZE = 4096
CDC_AVERAGE = 4096


class Chunker(Protocol):
    name: str

    def split(self, buf: memoryview, final: bool) -> tuple[list[memoryview], int]: ...


class PageChunker:
    """Fixed ``size`` chunks; the last one of a stream may be shorter."""

    name = "page"

    def __init__(self, size: int = PAGE_SIZE) -> None:
        if size < 512 or size & (size - 1):
            raise ValueError("the page size must be a power of two of at least 512")
        self.size = size

    def split(self, buf: memoryview, final: bool) -> tuple[list[memoryview], int]:
        end = len(buf) if final else len(buf) - len(buf) % self.size
        size = self.size
        return [buf[i : i + size] for i in range(0, end, size)], end


class ContentChunker:
    """FastCDC (2020) with a keyed gear table; chunks between 1 and 16 KiB."""

    name = "cdc"

    def __init__(self, seed: int, average: int = CDC_AVERAGE) -> None:
        self._cdc = FastCDC(avg_size=average, seed=seed & ((1 << 63) - 1))
        self.max_size = self._cdc.max_size

    def split(self, buf: memoryview, final: bool) -> tuple[list[memoryview], int]:
        chunks = [buf[c.offset : c.offset + c.length] for c in self._cdc.cut_buf(buf)]
        if not final and chunks:
            # The last cut may be the end of the buffer, not of the content: feed it again.
            chunks.pop()
        return chunks, sum(len(c) for c in chunks)


def seed_from_key(subkey: bytes) -> int:
    """The FastCDC gear seed: the first 8 bytes of the ``chunker-seed`` subkey."""
    return int.from_bytes(subkey[:8], "big")


def sqlite_page_size(header: bytes) -> int:
    """The page size stored in a SQLite file header (bytes 16-17; 1 means 65536)."""
    if len(header) < 18 or not header.startswith(b"SQLite format 3\x00"):
        return PAGE_SIZE
    value = int.from_bytes(header[16:18], "big")
    return 65536 if value == 1 else value
