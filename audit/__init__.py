"""The append-only, hash-chained audit log: the single source of truth for what
every person and sensor did. ``record`` is the one way in.

For the rest of the appliance:

* ``record(session, action, user=..., ...)``: queue an event; written at commit.
* ``session_info(settings)``: ``info`` for a sessionmaker whose commits sign a
  checkpoint each time the log passes a multiple of ``checkpoint_every``.
* ``maybe_checkpoint(session, settings)``: for the worker, every few seconds.
* ``checkpoint_now(session, settings)``: sign one now.
* ``audit.query``: search, timelines, field history; ``audit.verify.verify``.
* ``init_app(app, api)``: the pages, the API and its OpenAPI part, for the app factory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from audit import guard as _guard  # noqa: F401  (registers the append-only ORM guard)
from audit.checkpoint import checkpoint_now, maybe_checkpoint
from audit.log import record, session_info

if TYPE_CHECKING:
    from flask import Blueprint, Flask

__all__ = ["checkpoint_now", "init_app", "maybe_checkpoint", "record", "session_info"]


def init_app(app: Flask, api: Blueprint) -> None:
    """Add the audit trail's pages to ``app``, its search under ``api`` (``/api/v1``) and
    their OpenAPI part."""
    from appliance.kernel.openapi import add_fragment
    from audit import api as audit_api
    from audit import openapi, views

    app.register_blueprint(views.bp)
    api.register_blueprint(audit_api.bp)
    add_fragment(app, openapi.fragment)
