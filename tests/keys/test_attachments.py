"""Encrypted attachments: any change to the file is caught before its last byte is handed out."""

from __future__ import annotations

import hashlib
import io
import os
import random

import pytest

from appliance.keys import attachments, open_decrypted, read_decrypted, write_encrypted
from appliance.keys.errors import DecryptionFailed

SEG = attachments.SEGMENT_BYTES
SEALED_SEG = SEG + 16
HEADER = attachments.HEADER_BYTES


class Trickle(io.RawIOBase):
    """A reader that returns at most 1000 bytes per call, like a pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._data.read(min(size, 1000) if size >= 0 else 1000)


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG + 17])
def test_round_trip_of_every_shape(keyring, tmp_path, size):
    data = os.urandom(size)
    path = tmp_path / "f.enc"
    info = write_encrypted(path, "file-1", Trickle(data))
    assert info.size == size and info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.key_version == 1
    assert read_decrypted(path, "file-1", expected_sha256=info.sha256) == data
    segments = -(-size // SEG)
    assert path.stat().st_size == HEADER + size + 16 * segments + attachments.TRAILER_BYTES
    if size >= 16:
        assert data[:16] not in path.read_bytes()


def _write(tmp_path, data: bytes, file_id: str = "f") -> bytes:
    path = tmp_path / "orig.enc"
    write_encrypted(path, file_id, io.BytesIO(data))
    return path.read_bytes()


def _reads(tmp_path, blob: bytes, file_id: str = "f", **kwargs) -> bytes:
    path = tmp_path / "probe.enc"
    path.write_bytes(blob)
    return read_decrypted(path, file_id, **kwargs)


def test_every_flipped_byte_of_a_small_file_is_caught(keyring, tmp_path):
    blob = _write(tmp_path, b"quarterly client list " * 40)
    for position in range(len(blob)):
        altered = bytearray(blob)
        altered[position] ^= 0x80
        with pytest.raises(DecryptionFailed):
            _reads(tmp_path, bytes(altered))


def test_flipped_bytes_across_segments_are_caught(keyring, tmp_path):
    blob = _write(tmp_path, os.urandom(2 * SEG + 100))
    boundaries = [HEADER + i * SEALED_SEG + d for i in range(4) for d in (-17, -1, 0, 1, 16)]
    positions = set(range(HEADER)) | {p for p in boundaries if 0 <= p < len(blob)}
    positions |= set(random.Random(7).sample(range(len(blob)), 200))
    positions |= set(range(len(blob) - attachments.TRAILER_BYTES, len(blob)))
    for position in sorted(positions):
        altered = bytearray(blob)
        altered[position] ^= 0x01
        with pytest.raises(DecryptionFailed):
            _reads(tmp_path, bytes(altered))


def test_truncation_anywhere_is_caught(keyring, tmp_path):
    blob = _write(tmp_path, os.urandom(2 * SEG + 100))
    cuts = {0, 1, HEADER - 1, HEADER, HEADER + 1, len(blob) - 1, len(blob) - 56}
    cuts |= {HEADER + i * SEALED_SEG + d for i in range(3) for d in (0, 16, 17)}
    for cut in sorted(c for c in cuts if c < len(blob)):
        with pytest.raises(DecryptionFailed):
            _reads(tmp_path, blob[:cut])


def test_reordered_dropped_duplicated_or_appended_segments_are_caught(keyring, tmp_path):
    blob = _write(tmp_path, os.urandom(3 * SEG))
    header, body = blob[:HEADER], blob[HEADER:]
    segs = [body[i:i + SEALED_SEG] for i in range(0, 3 * SEALED_SEG, SEALED_SEG)]
    trailer = body[3 * SEALED_SEG:]
    variants = [
        segs[1] + segs[0] + segs[2] + trailer,  # swapped
        segs[0] + segs[2] + trailer,  # dropped
        segs[0] + segs[1] + segs[1] + segs[2] + trailer,  # duplicated
        segs[0] + segs[1] + segs[2] + trailer + b"extra",  # appended
        segs[0] + segs[1] + segs[2],  # trailer dropped
    ]
    for variant in variants:
        with pytest.raises(DecryptionFailed):
            _reads(tmp_path, header + variant)


def test_a_file_under_another_id_or_from_another_file_is_refused(keyring, tmp_path):
    blob = _write(tmp_path, b"contract", file_id="a")
    with pytest.raises(DecryptionFailed):
        _reads(tmp_path, blob, file_id="b")
    other = _write(tmp_path, b"contract", file_id="b")
    with pytest.raises(DecryptionFailed):  # b's segments under a's header
        _reads(tmp_path, blob[:HEADER] + other[HEADER:], file_id="a")


def test_the_recorded_hash_is_checked(keyring, tmp_path):
    blob = _write(tmp_path, b"invoice")
    assert _reads(tmp_path, blob, expected_sha256=hashlib.sha256(b"invoice").hexdigest())
    with pytest.raises(DecryptionFailed):
        _reads(tmp_path, blob, expected_sha256=hashlib.sha256(b"other").hexdigest())


def test_tampering_is_raised_before_the_last_byte_is_handed_out(keyring, tmp_path):
    data = os.urandom(2 * SEG + 5)
    blob = bytearray(_write(tmp_path, data))
    blob[-1] ^= 1  # only the trailer is damaged; every data segment is authentic
    path = tmp_path / "t.enc"
    path.write_bytes(bytes(blob))
    received = bytearray()
    with pytest.raises(DecryptionFailed):
        for chunk in open_decrypted(path, "f"):
            received += chunk
    assert len(received) < len(data)
    assert bytes(received) == data[:len(received)]


def test_reencrypting_moves_a_file_to_the_current_version(keyring, tmp_path):
    path = tmp_path / "r.enc"
    data = os.urandom(SEG + 3)
    write_encrypted(path, "r", io.BytesIO(data))
    assert attachments.reencrypt(path, "r") is False
    keyring.add_version("attachments")
    assert attachments.reencrypt(path, "r") is True
    assert attachments.file_version(path) == 2
    assert read_decrypted(path, "r") == data


def test_a_failed_reencryption_leaves_the_original(keyring, tmp_path):
    path = tmp_path / "bad.enc"
    write_encrypted(path, "x", io.BytesIO(b"payload" * 100))
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 1
    path.write_bytes(bytes(blob))
    keyring.add_version("attachments")
    with pytest.raises(DecryptionFailed):
        attachments.reencrypt(path, "x")
    assert path.read_bytes() == bytes(blob)
    assert not list(tmp_path.glob(".*.tmp"))
