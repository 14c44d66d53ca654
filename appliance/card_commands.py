"""``appliance card enroll|list|revoke|emergency``: cards for people, by IT and officers."""

from __future__ import annotations

import json

import click
from sqlalchemy import select

from appliance.card_login import enroll, issue_emergency_code
from appliance.kernel.cli import pass_appliance
from appliance.kernel.runtime import Appliance
from crm.identity import Card
from crm.people import find_user
from crm.revocation import active_cards, revoke_cards


@click.group()
def card() -> None:
    """Smart cards: enrol one for a person (with them present), list, revoke, emergency codes."""


@card.command("enroll")
@pass_appliance
@click.argument("username")
@click.option("--reader", default=None, help="Reader name [default: the first reader with a card].")
@click.option("--pin", prompt="Card PIN (the person types it)", hide_input=True,
              help="The card's PIN: the card proves it holds its keys.")
@click.option("--by", "by", default="it", show_default=True, help="Who enrols (for the audit trail).")
def enroll_command(appliance: Appliance, username: str, reader: str | None, pin: str, by: str) -> None:
    """Read the card in the reader and bind it to USERNAME."""
    from appliance.cards.enrolment import read_card_for_enrolment

    enrolment = read_card_for_enrolment(reader, pin)
    with appliance.session() as db:
        added = enroll(db, find_user(db, username), enrolment, by)
        click.echo(f"Card {added.card_id} ({added.algorithm}) enrolled for {username}"
                   f"{'; it can hold a key share' if added.key_management_pem else ''}.")


@card.command("list")
@pass_appliance
@click.option("--json", "as_json", is_flag=True)
@click.option("--all", "show_all", is_flag=True, help="Revoked cards too.")
def list_command(appliance: Appliance, as_json: bool, show_all: bool) -> None:
    """List enrolled cards."""
    with appliance.session() as db:
        stmt = select(Card).order_by(Card.enrolled_at)
        if not show_all:
            stmt = stmt.where(Card.revoked_at.is_(None))
        rows = [{"user": c.user.username, "card_id": c.card_id, "algorithm": c.algorithm,
                 "fingerprint": c.fingerprint, "can_seal": c.key_management_pem is not None,
                 "enrolled_at": c.enrolled_at.isoformat(), "revoked": c.revoked_at is not None}
                for c in db.scalars(stmt)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        state = "revoked" if r["revoked"] else "active"
        click.echo(f"{r['user']:<20} {r['card_id']:<34} {r['algorithm']:<10} {state}")


@card.command("revoke")
@pass_appliance
@click.argument("username")
@click.option("--card-id", default=None, help="Only this card [default: all of the person's cards].")
@click.option("--by", default="it", show_default=True)
def revoke_command(appliance: Appliance, username: str, card_id: str | None, by: str) -> None:
    """Revoke USERNAME's cards; sessions they opened end at once."""
    with appliance.session() as db:
        count = revoke_cards(db, find_user(db, username).id, by, card_id)
    click.echo(f"{count} card(s) revoked for {username}.")


@card.command("emergency")
@pass_appliance
@click.argument("username")
@click.option("--minutes", type=click.IntRange(1, 1440), default=60, show_default=True)
@click.option("--by", required=True, help="The officer issuing the code (for the audit trail).")
def emergency_command(appliance: Appliance, username: str, minutes: int, by: str) -> None:
    """Print a one-time code that lets USERNAME sign in without their card, for MINUTES."""
    with appliance.session() as db:
        user = find_user(db, username)
        code = issue_emergency_code(db, user, by, minutes)
        cards = len(active_cards(db, user.id))
    click.echo(code)
    click.echo(f"Valid once, for {minutes} minutes. {username} has {cards} active card(s).", err=True)
