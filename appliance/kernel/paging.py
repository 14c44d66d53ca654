"""Lists in pages: ``?page=&per_page=`` checked, one page of a query and the count of its
rows, and the JSON shape every list answers (``{"items", "total", "page", "per_page"}``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from flask import request
from sqlalchemy import Select, func, literal, select

from appliance.kernel.db import get_db
from appliance.kernel.errors import BadRequest

MAX_PER_PAGE = 200
DEFAULT_PER_PAGE = 50
#: Beyond this the offset would not fit the database's 64-bit integers.
MAX_PAGE = 10**9
#: Lists for people count matching rows up to here, then say "10,000+".
COUNT_UP_TO = 10_000


@dataclass
class Page:
    items: list[Any]
    total: int
    page: int
    per_page: int
    #: True when counting stopped at a cap: there are at least ``total`` rows.
    at_least: bool = False

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    def as_json(self, items: list[Any]) -> dict[str, Any]:
        return {"items": items, "total": self.total, "page": self.page, "per_page": self.per_page}


def page_args(default_per_page: int = DEFAULT_PER_PAGE) -> tuple[int, int]:
    """``page`` and ``per_page`` from the query string, checked."""
    try:
        page = int(request.args.get("page", 1))
        per_page = int(request.args.get("per_page", default_per_page))
    except ValueError:
        raise BadRequest(detail="page and per_page must be whole numbers") from None
    if page < 1:
        raise BadRequest(detail="page starts at 1")
    if page > MAX_PAGE:
        raise BadRequest(detail=f"page must be at most {MAX_PAGE}")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise BadRequest(detail=f"per_page must be between 1 and {MAX_PER_PAGE}")
    return page, per_page


def count_of(stmt: Select[Any]) -> Select[Any]:
    """``SELECT count(*)`` over the rows of ``stmt``, without its eager joins or ordering."""
    return stmt.order_by(None).with_only_columns(func.count(), maintain_column_froms=True)


def paginate(stmt: Select[Any], page: int, per_page: int, *, scalars: bool = True,
             count_up_to: int | None = None) -> Page:
    """One page of ``stmt`` and the count of its rows.

    ``count_up_to`` stops counting there (pages for people say "10,000+"): counting a
    hundred thousand visible rows exactly costs more than showing fifty of them.
    """
    db = get_db()
    if count_up_to is None:
        total, at_least = db.scalar(count_of(stmt)) or 0, False
    else:
        capped = stmt.order_by(None).with_only_columns(literal(1), maintain_column_froms=True)
        total = db.scalar(select(func.count()).select_from(capped.limit(count_up_to + 1).subquery())) or 0
        at_least = total > count_up_to
        total = min(total, count_up_to)
    window = stmt.limit(per_page).offset((page - 1) * per_page)
    rows = db.scalars(window).unique().all() if scalars else db.execute(window).all()
    return Page(list(rows), total, page, per_page, at_least)
