"""The append-only, hash-chained audit log: the single source of truth for what
every person and sensor did. ``record`` is the one way in.

For the rest of the appliance:

* ``record(session, action, user=..., ...)``: queue an event; written at commit.
* ``session_info(settings)``: ``info`` for a sessionmaker whose commits sign a
  checkpoint each time the log passes a multiple of ``checkpoint_every``.
* ``maybe_checkpoint(session, settings)``: for the worker, every few seconds.
* ``checkpoint_now(session, settings)``: sign one now.
* ``audit.query``: search, timelines, field history; ``audit.verify.verify``.
"""

from audit import guard as _guard  # noqa: F401  (registers the append-only ORM guard)
from audit.checkpoint import checkpoint_now, maybe_checkpoint
from audit.log import record, session_info

__all__ = ["checkpoint_now", "maybe_checkpoint", "record", "session_info"]
