"""M-of-N splitting of a 256-bit secret with pycryptodome's Shamir secret sharing.

pycryptodome shares 16-byte secrets (polynomials over GF(2^128)). A 32-byte
secret is shared as two halves, each with its own independent random
polynomial of degree M-1, evaluated at the same indices 1..N. Holder i keeps
both evaluations. Because the polynomials are independent, M-1 shares reveal
nothing about either half (each sharing is perfectly hiding on its own), and
M shares rebuild both. Nothing about the scheme is changed; it is run twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from Crypto.Protocol.SecretSharing import Shamir

SECRET_BYTES = 32
HALF = 16
MAX_SHARES = 255


@dataclass(frozen=True)
class Share:
    """Holder ``index``'s share: the two 16-byte evaluations, concatenated."""

    index: int
    value: bytes = field(repr=False)


def split_secret(secret: bytes, threshold: int, count: int) -> list[Share]:
    """``count`` shares of which any ``threshold`` rebuild ``secret`` (32 bytes)."""
    if len(secret) != SECRET_BYTES:
        raise ValueError("the secret must be 32 bytes")
    if not 1 <= threshold <= count <= MAX_SHARES:
        raise ValueError(f"need 1 <= M <= N <= {MAX_SHARES}, got M={threshold}, N={count}")
    low = Shamir.split(threshold, count, secret[:HALF])
    high = Shamir.split(threshold, count, secret[HALF:])
    return [Share(i, a + b) for (i, a), (j, b) in zip(low, high, strict=True) if i == j]


def combine_shares(shares: list[Share]) -> bytes:
    """Rebuild the secret from exactly M distinct shares.

    With fewer than M shares the result is a wrong secret, not an error:
    callers must check it (Citadel opens an authenticated wrap with it).
    """
    indices = [s.index for s in shares]
    if len(set(indices)) != len(indices):
        raise ValueError("the same share was given twice")
    if any(len(s.value) != SECRET_BYTES for s in shares):
        raise ValueError("a share must be 32 bytes")
    low = Shamir.combine([(s.index, s.value[:HALF]) for s in shares])
    high = Shamir.combine([(s.index, s.value[HALF:]) for s in shares])
    return low + high
