"""Signed checkpoints: the tree size, Merkle root and chain head, signed with Ed25519.

A checkpoint is made when the log holds events no checkpoint covers and
either ``checkpoint_every`` of them have accumulated or the oldest of them is
``checkpoint_seconds`` old (``maybe_checkpoint``, run by the worker), and
whenever asked (``checkpoint_now``: commits crossing a multiple of
``checkpoint_every``, the CLI, archiving, evidence bundles).

Making one:

1. read the events since the last checkpoint, in short read transactions,
   checking that each is intact and links to the last signed chain head; the
   tree's frontier at the last checkpoint is rebuilt from stored nodes and
   must fold to the signed root. Nothing unverified is ever signed.
2. under the checkpoint lock, if no one else has checkpointed meanwhile: sign,
   store the new tree nodes and the checkpoint, append the signed line to the
   anchor file and fsync it, then commit. A crash between the anchor and the
   commit leaves a line the database lacks, which verification checks against
   the events like any other checkpoint.
3. after the commit, send the line to syslog (failure is reported, not fatal).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from audit.anchor import append_line, last_checkpoint, send_syslog, syslog_message
from audit.chain import CHAIN_TAG, GENESIS
from audit.config import AuditConfig
from audit.errors import AuditError, AuditTampered
from audit.log import PENDING
from audit.merkle import EMPTY_ROOT, Tree
from audit.models import AuditEvent, Checkpoint, TreeNode
from audit.signing import provider_for, trusted_keys
from audit.statements import SignedCheckpoint
from audit.store import DbSource, head, latest_checkpoint, live_batches, row_canonical

CHECKPOINT_LOCK = 0x43_49_54_41_44_45_4D  # "CITADEM": separate from the append lock
_sha256 = hashlib.sha256


@dataclass(frozen=True)
class CheckpointResult:
    checkpoint: SignedCheckpoint
    syslog_error: str | None


def maybe_checkpoint(session: Session, settings: Any, *, now: datetime | None = None,
                     ) -> CheckpointResult | None:
    """Checkpoint if one is due (see the module doc); None when not due or not needed.

    Runs and commits its own transactions on ``session``: pass a session with
    no pending work (the worker's own).
    """
    config = AuditConfig.from_settings(settings)
    _require_idle(session)
    now = now or datetime.now(UTC)
    last = latest_checkpoint(session)
    current = head(session)
    covered = last.size if last else 0
    if current is None or current[0] <= covered:
        session.rollback()
        return None
    oldest = session.scalar(select(AuditEvent.ts).where(AuditEvent.seq == covered))
    session.rollback()
    due_by_count = current[0] - covered >= config.checkpoint_every
    oldest_age = (now - _aware(oldest)).total_seconds() if oldest is not None else 0.0
    # A clock more than an interval behind the oldest unsigned event stepped back: waiting
    # for it to catch up would leave events unsigned for as long as the step.
    stepped_back = oldest_age < -config.checkpoint_seconds
    if not due_by_count and not stepped_back and oldest_age < config.checkpoint_seconds:
        return None
    return checkpoint_now(session, config, now=now)


def checkpoint_now(session: Session, settings: Any, *, now: datetime | None = None,
                   ) -> CheckpointResult | None:
    """Sign a checkpoint over every committed event; None if the last one already covers all.

    Raises ``AuditTampered`` (and signs nothing) if the events since the last
    checkpoint, or the stored tree, do not match it.
    """
    config = AuditConfig.from_settings(settings)
    _require_idle(session)
    signer = provider_for(config).signer()
    last = latest_checkpoint(session)
    current = head(session)
    if current is not None and _recover_from_anchor(session, config, last, current[0]):
        last = latest_checkpoint(session)
    start = last.size if last else 0
    if current is None or current[0] <= start:
        session.rollback()
        return None
    size, tree_root, nodes, head_hash = _extend(session, config, last, current[0])
    ts = now or datetime.now(UTC)
    checkpoint = SignedCheckpoint.sign(signer, size, tree_root, head_hash, ts)
    if not _store(session, config, checkpoint, start, nodes):
        return None
    error = send_syslog(config.syslog_socket, syslog_message(checkpoint))
    return CheckpointResult(checkpoint, error)


def _recover_from_anchor(session: Session, config: AuditConfig, last: SignedCheckpoint | None,
                         size: int) -> bool:
    """Store the anchor's last checkpoint if a crash kept it out of the database.

    Such a line was written just before a commit that never happened; it is
    stored only if it is validly signed and matches the events exactly.
    """
    tail = last_checkpoint(config.anchor_path)
    start = last.size if last else 0
    if tail is None or not start < tail.size <= size or not tail.verify(trusted_keys(config)):
        return False
    _size, root, nodes, head_hash = _extend(session, config, last, tail.size)
    if root != tail.root or head_hash != tail.head:
        raise AuditTampered(detail=f"the anchor's last checkpoint (size {tail.size}) does not "
                            "match the events")
    return _store(session, config, tail, start, nodes, anchor=False)


def _extend(session: Session, config: AuditConfig, last: SignedCheckpoint | None, size: int,
            ) -> tuple[int, bytes, list[dict[str, Any]], bytes]:
    """Read and check events [last.size, size); the new root, new nodes and chain head."""
    start = last.size if last else 0
    nodes: list[dict[str, Any]] = []
    tree = Tree(DbSource(session, config))
    frontier = tree.frontier(start, on_node=lambda lv, ix, h: nodes.append(
        {"level": lv, "idx": ix, "hash": h}))
    session.rollback()
    if last is not None and frontier.root() != last.root:
        raise AuditTampered(detail=f"the events or stored tree nodes before {start} no longer "
                            f"match the checkpoint signed at size {start}; refusing to sign")
    prev = last.head if last else GENESIS
    expected = start
    for rows in live_batches(session, start, size):
        for row in rows:
            if row.seq != expected:
                raise AuditTampered(detail=f"event {expected} is missing; refusing to sign")
            leaf = _sha256(b"\x00" + row_canonical(row)).digest()
            if row.prev_hash != prev or _sha256(CHAIN_TAG + prev + leaf).digest() != row.hash:
                raise AuditTampered(detail=f"event {row.seq} does not match the chain; "
                                    "refusing to sign")
            frontier.append(leaf)
            prev = row.hash
            expected += 1
    if expected != size:
        raise AuditTampered(detail=f"event {expected} is missing; refusing to sign")
    return size, frontier.root() if size else EMPTY_ROOT, nodes, prev


def _store(session: Session, config: AuditConfig, checkpoint: SignedCheckpoint, start: int,
           nodes: list[dict[str, Any]], *, anchor: bool = True) -> bool:
    """Write nodes, checkpoint and anchor line, unless someone checkpointed meanwhile."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CHECKPOINT_LOCK})
    latest = session.scalar(select(Checkpoint.tree_size).order_by(Checkpoint.tree_size.desc())
                            .limit(1))
    if (latest or 0) != start:
        session.rollback()
        return False
    if nodes:
        session.execute(insert(TreeNode), nodes)
    session.execute(insert(Checkpoint), [{
        "tree_size": checkpoint.size, "root_hash": checkpoint.root,
        "head_hash": checkpoint.head, "ts": checkpoint.ts, "key_id": checkpoint.key_id,
        "signature": checkpoint.signature}])
    session.flush()
    if anchor:
        try:
            append_line(config.anchor_path, checkpoint.line())
        except BaseException:
            session.rollback()
            raise
    session.commit()
    return True


def _require_idle(session: Session) -> None:
    """Checkpointing ends the session's transactions: it must not carry anyone's work."""
    if session.info.get(PENDING) or session.new or session.dirty or session.deleted:
        raise AuditError(detail="checkpoint with a session that has no pending changes or "
                         "events (commit or roll back first)")


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
