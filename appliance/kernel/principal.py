"""Who is asking, for the request being served: the signed-in user and their rights.

The kernel does not know how rights are decided; the package that does (the CRM's
access policy) provides a factory with ``provide_rights``, and every other package
asks through ``rights()`` / ``require(cap)`` by the names in ``permissions``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, Protocol, TypeVar

from flask import Flask, current_app, g
from sqlalchemy.orm import Session

from appliance.kernel.db import get_db
from appliance.kernel.errors import NotAuthenticated
from appliance.kernel.permissions import Cap

F = TypeVar("F", bound=Callable[..., Any])


class Rights(Protocol):
    """What a signed-in user may do, as the kernel needs to ask it."""

    user: Any

    def holds(self, cap: Cap | str) -> bool: ...

    def require_cap(self, cap: Cap | str) -> None: ...


def provide_rights(app: Flask, factory: Callable[[Session, Any], Rights]) -> None:
    """Make ``factory(session, user)`` the rights of each request's user."""
    app.extensions["citadel.rights"] = factory


def login_required(view: F) -> F:
    """Views that need a signed-in user; others are sent to the sign-in page."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if g.get("user") is None:
            raise NotAuthenticated()
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def rights() -> Rights:
    """The signed-in user's rights, built once per request."""
    if "policy" not in g:
        if g.get("user") is None:
            raise NotAuthenticated()
        g.policy = current_app.extensions["citadel.rights"](get_db(), g.user)
    rights: Rights = g.policy
    return rights


def require(cap: Cap | str) -> None:
    """Refuse the request (403) unless the signed-in user holds ``cap``."""
    rights().require_cap(cap)
