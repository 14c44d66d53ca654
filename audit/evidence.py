"""Proofs and evidence bundles that a third party can check without the appliance.

An inclusion proof shows one event is leaf ``seq`` of the tree a signed
checkpoint commits to; a consistency proof shows a later checkpoint's tree
extends an earlier one (RFC 9162 sections 2.1.3 and 2.1.4). Every proof is
checked here before it is handed out.

An evidence bundle (``citadel.audit.bundle/v1``) is one JSON document::

    {"format": "citadel.audit.bundle/v1", "created": "...Z",
     "query": {"events": [..]} | {"user": .., "since": .., "until": ..},
     "checkpoint": {signed checkpoint}, "key": key id of the bundle signature,
     "public_keys": {key id: base64 raw Ed25519 key, ...},
     "events": [{"seq": n, "event": {public shape}, "canonical": "<canonical JSON>",
                 "leaf_hash": hex, "proof": [hex, ...]}, ...],
     "sig": base64}

A bundle made for readers who may not see all of an event (``redact``) shows
such an event as ``{"seq", "event": {what they may see}, "redacted": true,
"leaf_hash", "proof"}``: without its canonical bytes, the proof still shows the
leaf is in the signed tree, but not what it says.

``sig`` signs ``b"citadel.audit.bundle.v1\\n"`` followed by the canonical JSON
of the document without ``sig``; it vouches for the selection (for example,
"all of alice's events in March"), while each event stands on its own proof.
``tools/verify_evidence.py`` checks a bundle with nothing but Python and the
``cryptography`` package.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from audit.chain import format_ts, leaf_hash
from audit.checkpoint import checkpoint_now
from audit.config import AuditConfig
from audit.errors import AuditError, AuditTampered, NoSuchEvent, NotCheckpointed
from audit.events import EventFilter, StoredEvent, find_events, iter_events
from audit.merkle import Tree, verify_consistency, verify_inclusion
from audit.signing import provider_for, raw_public, trusted_keys
from audit.statements import BUNDLE_TAG, SignedCheckpoint, b64e, signed_message
from audit.store import DbSource, checkpoint_at, head, latest_checkpoint

BUNDLE_FORMAT = "citadel.audit.bundle/v1"
MAX_BUNDLE_EVENTS = 20_000


def _checkpoint(session: Session, size: int | None) -> SignedCheckpoint:
    cp = latest_checkpoint(session) if size is None else checkpoint_at(session, size)
    if cp is None:
        what = "the log" if size is None else f"size {size}"
        raise NotCheckpointed(detail=f"{what} has no checkpoint")
    return cp


def _inclusion(tree: Tree, event: StoredEvent, cp: SignedCheckpoint) -> dict[str, Any]:
    leaf = leaf_hash(event.canonical)
    proof = tree.inclusion_proof(event.seq, cp.size)
    if not verify_inclusion(event.seq, cp.size, leaf, proof, cp.root):
        raise AuditTampered(detail=f"the proof for event {event.seq} does not reach the signed "
                            f"root at size {cp.size}")
    return {"seq": event.seq, "event": event.public, "canonical": event.canonical.decode(),
            "leaf_hash": leaf.hex(), "proof": [p.hex() for p in proof]}


def _redacted(entry: dict[str, Any], redact: Callable[[dict[str, Any]], dict[str, Any]] | None,
              ) -> dict[str, Any]:
    """The entry as a reader under ``redact`` may see it (unchanged when nothing is withheld)."""
    if redact is None:
        return entry
    shown = redact(entry["event"])
    if shown == entry["event"]:
        return entry
    return {"seq": entry["seq"], "event": shown, "redacted": True,
            "leaf_hash": entry["leaf_hash"], "proof": entry["proof"]}


def prove(session: Session, settings: Any, seq: int, *, size: int | None = None,
          ) -> dict[str, Any]:
    """An inclusion proof of event ``seq`` against the latest checkpoint (or that at ``size``)."""
    config = AuditConfig.from_settings(settings)
    cp = _checkpoint(session, size)
    if not 0 <= seq < cp.size:
        current = head(session)
        last = current[0] - 1 if current else -1
        if seq < 0 or seq > last:
            raise NoSuchEvent(seq=seq, last=last)
        raise NotCheckpointed(detail=f"event {seq} is newer than the checkpoint at size {cp.size}")
    try:
        (event,) = find_events(session, config, [seq])
    except LookupError:
        raise NoSuchEvent(seq=seq, last="?") from None
    proof = _inclusion(Tree(DbSource(session, config)), event, cp)
    return {**proof, "tree_size": cp.size, "checkpoint": cp.to_json(),
            "public_key": _public_key_b64(config, cp.key_id)}


def consistency(session: Session, settings: Any, old: int, new: int) -> dict[str, Any]:
    """A consistency proof between the checkpoints at sizes ``old`` and ``new``."""
    config = AuditConfig.from_settings(settings)
    if old > new:
        raise AuditError(detail=f"the old size {old} is larger than the new size {new}")
    first, second = _checkpoint(session, old), _checkpoint(session, new)
    proof = Tree(DbSource(session, config)).consistency_proof(old, new)
    valid = verify_consistency(old, new, proof, first.root, second.root)
    return {"old": first.to_json(), "new": second.to_json(), "proof": [p.hex() for p in proof],
            "valid": valid}


def _public_key_b64(config: AuditConfig, key_id: str) -> str:
    key = trusted_keys(config).get(key_id)
    if key is None:
        raise AuditError(detail=f"the public key {key_id} that signed the checkpoint is not "
                         "trusted here; restore it into audit/trusted/")
    return b64e(raw_public(key))


def bundle(session: Session, settings: Any, *, seqs: list[int] | None = None,
           user: str | None = None, since: datetime | None = None,
           until: datetime | None = None, now: datetime | None = None,
           redact: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> dict[str, Any]:
    """A signed evidence bundle of the chosen events (by seq, or by user and time).
    ``redact`` gives what the bundle's reader may see of an event's public shape."""
    config = AuditConfig.from_settings(settings)
    if seqs:
        query: dict[str, Any] = {"events": sorted(set(seqs))}
        try:
            events = find_events(session, config, seqs)
        except LookupError as exc:
            raise AuditError(detail=f"no such events: {exc.args[0]}") from None
    elif user is not None:
        query = {"user": user, "since": since and format_ts(since),
                 "until": until and format_ts(until)}
        events = []
        for event in iter_events(session, config, EventFilter(since, until, user)):
            events.append(event)
            if len(events) > MAX_BUNDLE_EVENTS:
                raise AuditError(detail=f"more than {MAX_BUNDLE_EVENTS} events match; narrow "
                                 "--since/--until")
    else:
        raise AuditError(detail="choose the events: --events SEQ,SEQ or --user USER")
    cp = latest_checkpoint(session)
    if events and (cp is None or cp.size <= events[-1].seq):
        checkpoint_now(session, config)
        cp = latest_checkpoint(session)
    if cp is None:
        raise NotCheckpointed(detail="the log is empty")
    tree = Tree(DbSource(session, config))
    signer = provider_for(config).signer()
    document = {
        "format": BUNDLE_FORMAT,
        "created": format_ts(now or datetime.now(UTC)),
        "query": query,
        "checkpoint": cp.to_json(),
        "key": signer.key_id,
        "public_keys": {cp.key_id: _public_key_b64(config, cp.key_id),
                        signer.key_id: b64e(raw_public(signer.public_key))},
        "events": [_redacted(_inclusion(tree, event, cp), redact) for event in events],
    }
    document["sig"] = b64e(signer.sign(signed_message(BUNDLE_TAG, document)))
    session.rollback()
    return document
