"""The baseline for the web benchmarks: a bare Flask + SQLAlchemy app that runs the
same queries as the account list and the account page, without Citadel's layers
(no sign-in, no policy, no audit, no templates). Served by gunicorn like the app.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from flask import Flask, abort, request
from markupsafe import escape
from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from appliance import keys
from appliance.kernel.db import make_engine
from crm.access import Entity
from crm.models import Account, Activity, Contact, Deal
from crm.queries import search_clause

engine = make_engine(os.environ["BARE_DATABASE_URL"])
keys.sync(Path(os.environ["CITADEL_DATA_DIR"]))  # encrypted fields are read like the app reads them


class _FullView:
    """No policy: every field may be searched (the bare app has no rights to honour)."""

    def matchable(self, _entity: object, _field: str) -> bool:
        return True

    readable = matchable


FULL_VIEW = _FullView()
app = Flask(__name__)


@app.get("/healthz")
def healthz() -> str:
    return "ok"


@app.get("/accounts")
def accounts() -> str:
    with Session(engine) as db:
        stmt = select(Account).options(joinedload(Account.owner), joinedload(Account.team))
        q = request.args.get("q", "")
        if q:
            stmt = stmt.where(search_clause(FULL_VIEW, Entity.ACCOUNT, q))
        total = db.scalar(stmt.with_only_columns(func.count(), maintain_column_froms=True))
        rows = db.scalars(stmt.order_by(Account.name_folded, Account.id).limit(50)).all()
        cells = "".join(f"<tr><td>{escape(a.name)}</td><td>{escape(a.phone)}</td><td>{escape(a.email)}</td>"
                        f"<td>{escape(a.city)}</td><td>{escape(a.owner.full_name)}</td></tr>" for a in rows)
        return f"<p>{total}</p><table>{cells}</table>"


@app.get("/accounts/<uuid:account_id>")
def account(account_id: uuid.UUID) -> str:
    with Session(engine) as db:
        found = db.get(Account, account_id)
        if found is None:
            abort(404)
        contacts = db.scalars(select(Contact).where(Contact.account_id == account_id)).all()
        deals = db.scalars(select(Deal).where(Deal.account_id == account_id)).all()
        acts = db.scalars(select(Activity).where(Activity.account_id == account_id)
                          .order_by(Activity.created_at.desc()).limit(100)).all()
        return (f"<h1>{escape(found.name)}</h1><p>{escape(found.email)} {escape(found.phone)}</p>"
                f"<p>{len(contacts)} {len(deals)} {len(acts)}</p>")
