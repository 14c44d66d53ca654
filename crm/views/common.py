"""Helpers every CRM page uses: the record service for this request, form
data, list audit events."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any

from flask import flash, redirect, request, url_for
from sqlalchemy import Select

from appliance.kernel.db import get_db
from appliance.kernel.errors import ValidationFailed
from appliance.kernel.paging import COUNT_UP_TO, Page, page_args, paginate
from audit.requests import record_event
from crm.access import Action, Entity
from crm.current import policy
from crm.queries import ListQuery, build
from crm.records import RecordService
from crm.validation import FORM_NOISE


def records() -> RecordService:
    return RecordService(get_db(), policy(), request.remote_addr)


def form_data(*, checkboxes: Iterable[str] = ()) -> dict[str, Any]:
    """The submitted form as a dict; unticked checkboxes count as false."""
    data = {k: v for k, v in request.form.items() if k not in FORM_NOISE}
    for name in checkboxes:
        data.setdefault(name, "")
    return data


def list_page(entity: Entity, narrow: Callable[[Select[Any]], Select[Any]] | None = None,
              ) -> tuple[ListQuery, Page]:
    """One page of ``entity`` as the user may see it, searched, filtered and sorted from the
    query string (``narrow`` adds a page's own conditions); the list read is audited."""
    policy().require(entity, Action.READ)
    query = ListQuery.from_args(entity, request.args)
    stmt = build(policy(), entity, query)
    page = paginate(narrow(stmt) if narrow else stmt, *page_args(), count_up_to=COUNT_UP_TO)
    audit_list(entity, query, page.items, page.total)
    get_db().commit()
    return query, page


def displayed(entity: Entity, record: Any, only: Iterable[str]) -> dict[str, Any]:
    """A record's fields for a list or header line, as the user may see them, with its owner's
    name when the owner field is readable (a name would give a masked owner away)."""
    pol = policy()
    values = pol.present(entity, record, only=only)
    owner = getattr(record, "owner", None)
    if owner is not None and pol.readable(entity, "owner_id"):
        values["owner"] = owner.full_name
    team = getattr(record, "team", None)
    if team is not None and pol.readable(entity, "team_id"):
        values["team"] = team.name
    return values


def delete_from_account(entity: Entity, record_id: uuid.UUID, label: str) -> Any:
    """Delete a record that hangs on an account, then go back to the account's page."""
    record = policy().get(entity, record_id, Action.DELETE)
    account_id = record.account_id
    records().delete(entity, record.id)
    get_db().commit()
    flash(f"{label} deleted.", "success")
    return redirect(url_for("accounts.show", account_id=account_id))


def rejected(entity: Entity, exc: ValidationFailed) -> dict[str, str]:
    """Undo the attempt and record that input was refused (field names, never values)."""
    db = get_db()
    db.rollback()
    record_event("input.rejected", entity=entity.value,
                 meta={"fields": sorted(exc.errors), "path": request.path[:200]})
    db.commit()
    return exc.errors


def audit_list(entity: Entity, query: ListQuery, items: list[Any], total: int) -> None:
    """One ``record.search`` event for a list page: which records were shown.

    The search text itself is not kept (it may be a client's e-mail or phone);
    its length and the filters used are.
    """
    me = policy().user.id
    outside = sum(1 for item in items if item.owner_id != me)
    record_event("record.search", entity=entity.value, count=len(items),
                 meta={"ids": [str(item.id) for item in items], "total": total,
                       "q_len": len(query.q), "filters": sorted(query.filters),
                       "sort": query.sort, "outside_book": outside})


def audit_view(entity: Entity, record: Any, *, related: int = 0) -> None:
    """One ``record.view`` event for a record page (and the related rows it shows)."""
    record_event("record.view", entity=entity.value, entity_id=record.id, count=1 + related,
                 meta={"outside_book": int(record.owner_id != policy().user.id),
                       "related": related})
