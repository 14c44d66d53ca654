#!/usr/bin/env python3
"""Check a Citadel audit evidence bundle, with no access to the appliance.

    python verify_evidence.py BUNDLE.json [--key PUBLIC.pem | --key-id HEX] [--json]

Needs only Python 3.11+ and the ``cryptography`` package. It checks that:

1. the checkpoint is signed (Ed25519) by the key the bundle names, and that
   key is the one you expect (``--key``/``--key-id``; without them it prints
   the key id to compare with the one the appliance's operator published);
2. each event's canonical bytes hash (RFC 6962 leaf) into the signed Merkle
   root through its inclusion proof (RFC 9162 section 2.1.3.2);
3. each event's readable form says exactly what its canonical bytes say;
4. the bundle's own signature covers the selection, and the events match it.

Exit status: 0 the evidence holds, 1 it does not, 2 the bundle cannot be read.
The byte formats are in docs/audit-trail.md; this file deliberately shares no
code with the appliance.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

BUNDLE_FORMAT = "citadel.audit.bundle/v1"
CHECKPOINT_TAG = b"citadel.audit.checkpoint.v1\n"
BUNDLE_TAG = b"citadel.audit.bundle.v1\n"
PUBLIC_FIELDS = ("seq", "ts", "user", "action", "entity", "entity_id", "count", "ip", "meta")


class Unreadable(Exception):
    """The bundle is not a bundle: exit 2."""


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes) -> bool:
    """RFC 9162, section 2.1.3.2."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def key_id(raw: bytes) -> str:
    return hashlib.sha256(raw).digest()[:16].hex()


def signature_ok(raw_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(raw_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def utc(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def public_shape(canonical: dict[str, Any]) -> dict[str, Any]:
    """What the bundle must show for these canonical bytes (ts to the second)."""
    shown = {name: canonical[name] for name in PUBLIC_FIELDS}
    shown["ts"] = utc(canonical["ts"]).strftime("%Y-%m-%dT%H:%M:%SZ")
    return shown


class Check:
    """Collects failures; each says what is wrong in words a reviewer can act on."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.notes: list[str] = []

    def require(self, condition: bool, failure: str) -> bool:
        if not condition:
            self.failures.append(failure)
        return condition


def check_bundle(bundle: dict[str, Any], pinned: str | None) -> Check:
    check = Check()
    if bundle.get("format") != BUNDLE_FORMAT:
        raise Unreadable(f"not a {BUNDLE_FORMAT} document")
    try:
        keys = {kid: base64.b64decode(raw, validate=True)
                for kid, raw in bundle["public_keys"].items()}
        cp = bundle["checkpoint"]
        size, root = cp["size"], bytes.fromhex(cp["root"])
        events = bundle["events"]
        signature = base64.b64decode(bundle["sig"], validate=True)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise Unreadable(f"a required field is missing or malformed ({exc!r})") from None
    for kid, raw in keys.items():
        check.require(key_id(raw) == kid, f"public key {kid} does not have that key id")
    _check_checkpoint(check, cp, keys, pinned)
    for entry in events:
        _check_event(check, entry, size, root)
    _check_selection(check, bundle)
    unsigned = {k: v for k, v in bundle.items() if k != "sig"}
    message = BUNDLE_TAG + canonical_json(unsigned).encode()
    check.require(bundle.get("key") in keys and signature_ok(keys[bundle["key"]], signature,
                                                             message),
                  "the bundle signature is invalid: the bundle was changed after it was made")
    return check


def _check_checkpoint(check: Check, cp: dict[str, Any], keys: dict[str, bytes],
                      pinned: str | None) -> None:
    kid = cp.get("key")
    body = {k: v for k, v in cp.items() if k != "sig"}
    message = CHECKPOINT_TAG + canonical_json(body).encode()
    try:
        signature = base64.b64decode(cp["sig"], validate=True)
    except (KeyError, ValueError):
        signature = b""
    check.require(kid in keys and signature_ok(keys[kid], signature, message),
                  f"the checkpoint (size {cp.get('size')}) is not validly signed by key {kid}")
    if pinned is not None:
        check.require(kid == pinned, f"the checkpoint is signed by key {kid}, not by the "
                      f"expected key {pinned}")
    else:
        check.notes.append(f"signed by key id {kid}: compare it with the id published for the "
                           "appliance (or pass --key / --key-id)")


def _check_event(check: Check, entry: dict[str, Any], size: int, root: bytes) -> None:
    seq = entry.get("seq")
    where = f"event {seq}"
    if entry.get("redacted") is True:
        _check_redacted(check, entry, size, root)
        return
    try:
        raw = entry["canonical"].encode()
        body = json.loads(raw)
        proof = [bytes.fromhex(p) for p in entry["proof"]]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        check.failures.append(f"{where}: unreadable ({exc!r})")
        return
    if not check.require(isinstance(body, dict) and canonical_json(body).encode() == raw,
                         f"{where}: its bytes are not in canonical form"):
        return
    check.require(body.get("seq") == seq, f"{where}: its canonical bytes say seq {body.get('seq')}")
    leaf = leaf_hash(raw)
    check.require(entry.get("leaf_hash") == leaf.hex(), f"{where}: the stated leaf hash is wrong")
    check.require(isinstance(seq, int) and verify_inclusion(seq, size, leaf, proof, root),
                  f"{where}: its inclusion proof does not lead to the signed root")
    try:
        shown_ok = entry.get("event") == public_shape(body)
    except (KeyError, TypeError, ValueError):
        shown_ok = False
    check.require(shown_ok, f"{where}: the readable event differs from its canonical bytes")


def _check_redacted(check: Check, entry: dict[str, Any], size: int, root: bytes) -> None:
    """An event shown in part: its leaf is in the signed tree; what it says is withheld."""
    seq = entry.get("seq")
    try:
        leaf = bytes.fromhex(entry["leaf_hash"])
        proof = [bytes.fromhex(p) for p in entry["proof"]]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        check.failures.append(f"event {seq}: unreadable ({exc!r})")
        return
    if check.require(isinstance(seq, int) and verify_inclusion(seq, size, leaf, proof, root),
                     f"event {seq}: its inclusion proof does not lead to the signed root"):
        check.notes.append(f"event {seq} is shown in part: it is in the log, but its full "
                           "content is withheld from this bundle's readers")


def _check_selection(check: Check, bundle: dict[str, Any]) -> None:
    query, events = bundle.get("query") or {}, bundle["events"]
    seqs = [entry.get("seq") for entry in events]
    if "events" in query:
        check.require(seqs == sorted(set(query["events"])),
                      "the events are not exactly the ones the bundle says it holds")
        return
    since = utc(query["since"]) if query.get("since") else None
    until = utc(query["until"]) if query.get("until") else None
    for entry in events:
        if entry.get("redacted") is True:
            continue  # only its place in the log is proved; nothing to compare
        try:
            event = json.loads(entry["canonical"])
            ts = utc(event["ts"])
        except (KeyError, TypeError, ValueError):
            continue  # already reported as unreadable
        check.require(event.get("user") == query.get("user")
                      and (since is None or ts >= since) and (until is None or ts < until),
                      f"event {entry.get('seq')} is outside the bundle's selection")
    check.require(seqs == sorted(set(seqs)), "the events are not in log order, or repeat")


def load_pinned(args: argparse.Namespace) -> str | None:
    if args.key:
        key = load_pem_public_key(Path(args.key).read_bytes())
        if not isinstance(key, Ed25519PublicKey):
            raise Unreadable(f"{args.key} is not an Ed25519 public key")
        return key_id(key.public_bytes(Encoding.Raw, PublicFormat.Raw))
    return args.key_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check a Citadel audit evidence bundle.")
    parser.add_argument("bundle", help="the bundle file (JSON)")
    pin = parser.add_mutually_exclusive_group()
    pin.add_argument("--key", help="PEM file of the appliance's audit public key")
    pin.add_argument("--key-id", help="the expected key id (32 hex digits)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    try:
        pinned = load_pinned(args)
        bundle = json.loads(Path(args.bundle).read_text(encoding="utf-8"))
        if not isinstance(bundle, dict):
            raise Unreadable("the file holds no JSON object")
        check = check_bundle(bundle, pinned)
    except (OSError, ValueError, Unreadable) as exc:
        print(f"cannot check {args.bundle}: {exc}", file=sys.stderr)
        return 2
    ok = not check.failures
    if args.json:
        print(json.dumps({"ok": ok, "events": len(bundle["events"]),
                          "checkpoint": bundle["checkpoint"], "failures": check.failures,
                          "notes": check.notes}, indent=2))
    else:
        cp = bundle["checkpoint"]
        verdict = "HOLDS" if ok else "DOES NOT HOLD"
        print(f"Evidence {verdict}: {len(bundle['events'])} events against the checkpoint of "
              f"{cp['size']} events signed at {cp['ts']}.")
        for failure in check.failures:
            print(f"  FAIL: {failure}")
        for note in check.notes:
            print(f"  note: {note}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
