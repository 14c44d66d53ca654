"""``appliance audit ...``: verify, checkpoint, prove, bundle, export, forward, archive.

``verify`` exits 0 when the trail is intact, 1 when it was tampered with
(naming the first bad position and what happened there), 2 when it cannot
run. The other commands exit 0 on success and 2 when they cannot do their job.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy.exc import SQLAlchemyError

from appliance.kernel.cli import CitadelGroup, pass_appliance
from appliance.kernel.runtime import Appliance
from audit.archive import MAX_SEGMENT_EVENTS, archive_before
from audit.checkpoint import checkpoint_now
from audit.config import AuditConfig
from audit.errors import AuditError, AuditUnavailable
from audit.events import EventFilter, iter_events
from audit.evidence import bundle, consistency, prove
from audit.forward import FORMATS, PROTOCOLS, Destination, forward
from audit.signing import key_id_of, load_public_key, provider_for
from audit.store import checkpoints
from audit.verify import Report, verify


class AuditGroup(CitadelGroup):
    """Turns database and file errors into one-line messages too."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SQLAlchemyError as exc:
            raise AuditUnavailable(detail=f"the database failed ({exc.__class__.__name__}: "
                                   f"{str(exc).splitlines()[0]})") from None
        except BrokenPipeError:  # the reader went away (`... | head`): stop quietly
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (nothing left to flush to)
            sys.exit(0)
        except OSError as exc:
            raise AuditError(detail=f"{exc.filename or ''} {exc.strerror or exc}".strip(),
                             ) from None


class UtcTime(click.ParamType):
    """A date (midnight UTC) or an ISO 8601 time; without an offset it means UTC."""

    name = "DATE"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            if len(value) == 10:
                day = date.fromisoformat(value)
                return datetime(day.year, day.month, day.day, tzinfo=UTC)
            parsed = datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not a date (2026-03-01) or time (2026-03-01T09:00:00Z)",
                      param, ctx)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


UTC_TIME = UtcTime()


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


@click.group("audit", cls=AuditGroup)
def audit_group() -> None:
    """The tamper-evident audit trail: verify it, prove events, export and forward them."""


@audit_group.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--from", "start", type=click.IntRange(min=0), default=0, show_default=True,
              help="Start at this seq, trusting the stored history before it.")
@click.option("--key", "key_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Also trust this Ed25519 public key (PEM); repeatable.")
@pass_appliance
def verify_command(app: Appliance, as_json: bool, start: int, key_files: tuple[str, ...]) -> None:
    """Replay the whole log: exit 0 intact, 1 tampered (says where and how), 2 cannot run."""
    extra = {}
    for name in key_files:
        key = load_public_key(Path(name))
        extra[key_id_of(key)] = key
    with app.session() as session:
        report = verify(session, app.settings, start=start, extra_keys=extra)
    if as_json:
        _echo_json(report.to_json())
    else:
        _print_report(report)
    sys.exit(0 if report.ok else 1)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _print_report(report: Report) -> None:
    archived = (f" ({report.archived_events:,} archived in {_count(report.segments, 'segment')})"
                if report.segments else "")
    scope = f" from seq {report.start}" if report.start else ""
    first = report.first
    if first is None:
        click.secho(f"Audit trail intact: {_count(report.events, 'event')}{scope}{archived}, "
                    f"{_count(report.checkpoints, 'checkpoint')}, "
                    f"{_count(report.anchor_lines, 'anchor line')}.", fg="green")
    else:
        where = f"event {first.seq}" if first.seq is not None else f"checkpoint {first.checkpoint}"
        click.secho(f"TAMPERED: first bad position is {where}: {first.kind}: {first.detail}",
                    fg="red", bold=True)
        for other in sorted(report.findings, key=lambda f: f.position):
            if other is not first:
                click.echo(f"  also: {other.kind}: {other.detail}")
    if report.latest is not None:
        cp = report.latest
        click.echo(f"Latest checkpoint: {cp.size:,} events, signed {cp.ts:%Y-%m-%d %H:%M:%S} UTC "
                   f"by key {cp.key_id}.")
    click.echo(f"Checked {report.events:,} events in {report.seconds:.2f} s "
               f"({report.rate:,.0f} events/s).")
    for warning in report.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)


@audit_group.command("checkpoint")
@click.option("--json", "as_json", is_flag=True, help="Print the checkpoint as JSON.")
@pass_appliance
def checkpoint_command(app: Appliance, as_json: bool) -> None:
    """Sign a checkpoint over every event now (the worker also does this on schedule)."""
    with app.session() as session:
        result = checkpoint_now(session, app.settings)
    if result is None:
        click.echo("Nothing new: the latest checkpoint already covers every event.")
        return
    cp = result.checkpoint
    if as_json:
        _echo_json(cp.to_json())
    else:
        click.echo(f"Checkpoint signed: {cp.size:,} events, root {cp.root.hex()}, key {cp.key_id}.")
    if result.syslog_error:
        click.secho(f"warning: {result.syslog_error}", fg="yellow", err=True)


@audit_group.command("checkpoints")
@click.option("--json", "as_json", is_flag=True, help="Print them as JSON lines.")
@pass_appliance
def checkpoints_command(app: Appliance, as_json: bool) -> None:
    """List the signed checkpoints (their sizes are what `consistency` takes)."""
    with app.session() as session:
        found = checkpoints(session)
    for cp in found:
        if as_json:
            click.echo(cp.line())
        else:
            click.echo(f"{cp.size:>12,}  {cp.ts:%Y-%m-%d %H:%M:%S} UTC  key {cp.key_id}  "
                       f"root {cp.root.hex()[:16]}...")
    if not found and not as_json:
        click.echo("No checkpoint yet: run `appliance audit checkpoint`.")


@audit_group.command("prove")
@click.argument("seq", type=click.IntRange(min=0))
@click.option("--size", type=click.IntRange(min=1), default=None,
              help="Prove against the checkpoint of this size [default: the latest].")
@pass_appliance
def prove_command(app: Appliance, seq: int, size: int | None) -> None:
    """Print the inclusion proof of event SEQ against a signed checkpoint (JSON)."""
    with app.session() as session:
        _echo_json(prove(session, app.settings, seq, size=size))


@audit_group.command("consistency")
@click.argument("old", type=click.IntRange(min=1))
@click.argument("new", type=click.IntRange(min=1))
@pass_appliance
def consistency_command(app: Appliance, old: int, new: int) -> None:
    """Print the proof that checkpoint NEW extends checkpoint OLD (sizes); exit 1 if not."""
    with app.session() as session:
        result = consistency(session, app.settings, old, new)
    _echo_json(result)
    sys.exit(0 if result["valid"] else 1)


def _seq_list(_ctx: click.Context, _param: click.Parameter, value: str | None) -> list[int]:
    if not value:
        return []
    try:
        seqs = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter("give event numbers separated by commas, e.g. 12,40,41") from None
    if any(seq < 0 for seq in seqs):
        raise click.BadParameter("event numbers start at 0")
    return seqs


@audit_group.command("bundle")
@click.option("--events", "seqs", callback=_seq_list, help="Event numbers: SEQ,SEQ,...")
@click.option("--user", help="Every event of this user (with --since/--until).")
@click.option("--since", type=UTC_TIME, help="From this time (inclusive).")
@click.option("--until", type=UTC_TIME, help="Up to this time (exclusive).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, writable=True),
              help="Where to write the bundle (JSON).")
@pass_appliance
def bundle_command(app: Appliance, seqs: list[int], user: str | None, since: datetime | None,
                   until: datetime | None, out: str) -> None:
    """Write a signed evidence bundle that anyone can check with tools/verify_evidence.py."""
    if bool(seqs) == bool(user):
        raise click.UsageError("choose either --events or --user")
    with app.session() as session:
        document = bundle(session, app.settings, seqs=seqs or None, user=user, since=since,
                          until=until)
    Path(out).write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    click.echo(f"Wrote {len(document['events'])} events with proofs against the checkpoint of "
               f"{document['checkpoint']['size']:,} events to {out}.\n"
               f"Check it with: python tools/verify_evidence.py {out}")


@audit_group.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl",
              show_default=True, help="One JSON event per line.")
@click.option("--since", type=UTC_TIME, help="From this time (inclusive).")
@click.option("--until", type=UTC_TIME, help="Up to this time (exclusive).")
@click.option("--user", help="Only this user's events.")
@click.option("--out", type=click.File("w"), default="-", help="Output file [default: stdout].")
@pass_appliance
def export_command(app: Appliance, fmt: str, since: datetime | None, until: datetime | None,
                   user: str | None, out: Any) -> None:
    """Export events, archived and live, in DESIGN's event shape plus seq."""
    with app.session() as session:
        for event in iter_events(session, app.settings, EventFilter(since, until, user)):
            out.write(json.dumps(event.public, ensure_ascii=False) + "\n")


@audit_group.command("forward")
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True,
              help="RFC 5424 syslog or CEF.")
@click.option("--to", "target", required=True, help="The SIEM collector, HOST:PORT.")
@click.option("--protocol", type=click.Choice(PROTOCOLS), default="udp", show_default=True)
@click.option("--follow", is_flag=True, help="Keep forwarding new events as they come.")
@click.option("--from", "start", type=click.IntRange(min=0), default=None,
              help="Start at this seq instead of after the last one forwarded.")
@pass_appliance
def forward_command(app: Appliance, fmt: str, target: str, protocol: str, follow: bool,
                    start: int | None) -> None:
    """Send events to a SIEM, resuming after the last event it was sent."""
    dest = Destination.parse(fmt, protocol, target)
    with app.session() as session:
        try:
            sent = forward(session, app.settings, dest, follow=follow, start=start)
        except KeyboardInterrupt:
            sent = None
    if sent is not None:
        click.echo(f"Forwarded {sent} events to {target} ({fmt} over {protocol}).")


@audit_group.command("archive")
@click.option("--before", required=True, type=UTC_TIME,
              help="Archive events older than this date.")
@click.option("--max-events", type=click.IntRange(min=16), default=MAX_SEGMENT_EVENTS,
              show_default=True, help="Most events per segment file.")
@pass_appliance
def archive_command(app: Appliance, before: datetime, max_events: int) -> None:
    """Seal old events into signed segment files, then remove them from the table."""
    with app.session() as session:
        done = archive_before(session, app.settings, before, max_events=max_events)
    if not done:
        click.echo("Nothing to archive (only events covered by a checkpoint can be archived).")
    for segment in done:
        click.echo(f"Archived events {segment.first}..{segment.end - 1} into {segment.path}")


@audit_group.command("key")
@pass_appliance
def key_command(app: Appliance) -> None:
    """Show the public key that signs checkpoints (publish its id for outside checks)."""
    signer = provider_for(AuditConfig.from_settings(app.settings)).signer()
    click.echo(f"key id: {signer.key_id}")
    click.echo(signer.public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
               .decode().rstrip())
