"""Blind indexes: exact-match search over encrypted fields without decrypting them.

A blind index is a keyed HMAC-SHA256 of the *normalised* value, truncated to
16 bytes (128 bits: collisions are negligible, so an index match is a match)
and prefixed with the 4-byte key version::

    0  4  blind_index key version (uint32, big-endian)
    4 16  HMAC-SHA256(K_col, normalised value UTF-8)[:16]

``K_col`` = HKDF(blind_index key, "citadel blind index" || table || column):
one key per column, so equal values in two columns (an account's and a
contact's e-mail) do not show as equal. The index reveals which rows share a
value (equality), nothing else; see docs/encryption.md for the trade-off.
"""

from __future__ import annotations

import re
import struct
import unicodedata
from collections.abc import Callable

from appliance.keys import state
from appliance.keys.keyring import Keyring
from appliance.keys.primitives import frame, hmac_sha256

PURPOSE = "blind_index"
INDEX_BYTES = 16
_VERSION = struct.Struct(">I")
STORED_BYTES = _VERSION.size + INDEX_BYTES


def _nfkc(value: str) -> str:
    return unicodedata.normalize("NFKC", value)


def normalise_email(value: str) -> str:
    """Trimmed and lower-cased (the whole address, as people type it either way)."""
    return _nfkc(value).strip().lower()


def normalise_phone(value: str) -> str:
    """Digits only, no international prefix: ``+49 30 1234``, ``0049-30-1234`` -> ``49301234``.

    A national form (``030 1234``) keeps its leading zero and so does not
    match the international one: store numbers in international form.
    """
    text = _nfkc(value).strip()
    digits = re.sub(r"\D", "", text)
    if text.startswith("00"):
        digits = digits[2:]
    return digits


def normalise_tax_id(value: str) -> str:
    """Letters and digits only, upper-cased: ``de 123.456-789`` -> ``DE123456789``."""
    return re.sub(r"[^0-9A-Z]", "", _nfkc(value).upper())


def normalise_text(value: str) -> str:
    """Trimmed, Unicode-normalised, case kept."""
    return _nfkc(value).strip()


NORMALISERS: dict[str, Callable[[str], str]] = {
    "email": normalise_email,
    "phone": normalise_phone,
    "tax_id": normalise_tax_id,
    "text": normalise_text,
}


def normaliser(kind: str) -> Callable[[str], str]:
    try:
        return NORMALISERS[kind]
    except KeyError:
        raise ValueError(f"unknown blind index kind {kind!r}: use one of "
                         f"{', '.join(NORMALISERS)}") from None


def column_key(keyring: Keyring, version: int, table: str, column: str) -> bytes:
    return keyring.subkey(PURPOSE, version, frame("citadel blind index", table, column))


def index_of(keyring: Keyring, version: int, table: str, column: str, normalised: str,
             length: int = INDEX_BYTES) -> bytes:
    """The stored index bytes for an already normalised value."""
    mac = hmac_sha256(column_key(keyring, version, table, column), normalised.encode())
    return _VERSION.pack(version) + mac[:length]


def blind_index(table: str, column: str, kind: str, value: str, *,
                keyring: Keyring | None = None, version: int | None = None) -> bytes | None:
    """The index to store with ``value``; None when nothing is left after normalising."""
    normalised = normaliser(kind)(value)
    if not normalised:
        return None
    keyring = keyring or state.current()
    version = keyring.current_version(PURPOSE) if version is None else version
    return index_of(keyring, version, table, column, normalised)


def blind_terms(table: str, column: str, kind: str, term: str, *,
                keyring: Keyring | None = None) -> list[bytes]:
    """What to look for to find ``term``: its index under every key version.

    Searching all versions keeps search exact while a rotation is rewriting
    indexes, and finds values a stale process wrote under an older version.
    Use as ``WHERE <index column> IN (...)``; empty when ``term`` normalises to nothing.
    """
    normalised = normaliser(kind)(term)
    if not normalised:
        return []
    keyring = keyring or state.current()
    return [index_of(keyring, v, table, column, normalised) for v in keyring.versions(PURPOSE)]


def index_version(stored: bytes) -> int:
    return int(_VERSION.unpack_from(stored)[0])


# -- name search ---------------------------------------------------------------


def fold(text: str) -> str:
    """Lower-case, accent-free form of a name (the same folding as CRM name search)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def name_tokens(text: str) -> list[str]:
    """The folded words of a name: ``"Zoë  O'Neil-Smith"`` -> ``["zoe", "o", "neil", "smith"]``."""
    return [t for t in re.split(r"[^\w]+", fold(text)) if t]


def token_prefixes(token: str, min_length: int = 3) -> list[str]:
    """``"smith"`` -> ``["smi", "smit", "smith"]``; a short token is its own only prefix."""
    if len(token) <= min_length:
        return [token]
    return [token[:n] for n in range(min_length, len(token) + 1)]


def name_index_terms(table: str, column: str, name: str, *, min_prefix: int | None = None,
                     length: int = INDEX_BYTES, keyring: Keyring | None = None,
                     version: int | None = None) -> set[bytes]:
    """Blind tokens of a name, to store one per row in a side table (row id, token).

    By default one token per word (whole-word search: the least leakage, see
    docs/encryption.md). With ``min_prefix=3`` also every prefix of 3 or more
    letters, so ``"smi"`` finds ``"Smith"``. A short ``length`` makes tokens
    collide on purpose; the caller then drops false positives by decrypting.
    """
    keyring = keyring or state.current()
    version = keyring.current_version(PURPOSE) if version is None else version
    plain = {p for token in name_tokens(name)
             for p in (token_prefixes(token, min_prefix) if min_prefix else [token])}
    return {index_of(keyring, version, table, column, p, length) for p in plain}


def name_search_terms(table: str, column: str, term: str, *, length: int = INDEX_BYTES,
                      keyring: Keyring | None = None) -> list[set[bytes]]:
    """Per word of ``term``, the tokens a matching row must have one of (any key version).

    A row matches when it has, for every word, one of that word's tokens.
    With a prefix index, words shorter than its ``min_prefix`` match whole words only.
    """
    keyring = keyring or state.current()
    return [{index_of(keyring, v, table, column, w, length) for v in keyring.versions(PURPOSE)}
            for w in name_tokens(term)]
