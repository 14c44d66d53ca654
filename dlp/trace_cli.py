"""``appliance dlp trace`` and ``appliance dlp watch``: leak tracing from the command line.

``trace FILE`` names the exports and prints a leaked file came from; it exits
0 when it names a source, 1 when it names none, 2 when it cannot run (no
such file, not a table, appliance sealed). Each trace is an audit event
(``dlp.trace``: who ran it, the file's name and digest, the marks found).
``watch`` runs the file sensor.
"""

from __future__ import annotations

import getpass
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

import audit
from appliance import keys
from appliance.kernel.cli import pass_appliance
from appliance.kernel.errors import ConfigError, Sealed
from appliance.kernel.runtime import Appliance


def _unsealed(appliance: Appliance) -> None:
    if keys.start(appliance.settings) is None:
        raise Sealed()


@click.command("trace")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON.")
@pass_appliance
def trace(appliance: Appliance, file: str, as_json: bool) -> None:
    """Name the user(s) and export(s) a leaked CSV, XLSX or saved print page came from.

    Exit status: 0 a source was found, 1 none was, 2 the file or the appliance
    cannot be read.
    """
    from dlp.trace import trace_report

    _unsealed(appliance)
    with appliance.session() as db:
        report = trace_report(db, file, settings=appliance.settings)
        audit.record(db, "dlp.trace", user=_operator(), meta={
            "file": Path(file).name, "sha256": report.sha256, "found": report.found,
            "marks": [m.mark_id for m in report.matches]})
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        _print_report(report)
    sys.exit(0 if report.found else 1)


def _operator() -> str:
    """Who ran the command, as the host knows them (the trace is audited)."""
    try:
        return getpass.getuser()[:64]
    except (KeyError, OSError):
        return "unknown"


def _print_report(report: Any) -> None:
    click.echo(f"{report.path}: {report.format}, {report.rows} rows, "
               f"{report.recognised} recognised as client records, "
               f"{report.canary_rows} canary rows")
    if not report.matches:
        click.echo("No source found: the file carries no mark of any export or print.")
        for candidate in report.candidates[:3]:
            click.echo(f"  (held the same rows: {candidate.channel} by {candidate.user} on "
                       f"{candidate.created_at[:16]}, {candidate.rows_matched} rows, "
                       f"marks {candidate.marks_matched}/{candidate.marks_tested})")
        return
    for match in report.matches:
        click.echo(f"\n{match.channel} by {match.user} on {match.created_at[:16]} "
                   f"({match.entity}, export {match.export_id or match.mark_id}): "
                   f"confidence {match.confidence:.4f}")
        for reason in match.reasons:
            click.echo(f"  - {reason}")
        for canary in match.canaries[:5]:
            click.echo(f"    canary at {canary['where']}, {canary['column']}: {canary['value']}")


@click.command("watch")
@click.option("--folder", "folders", multiple=True, type=click.Path(file_okay=False),
              help="Also watch this folder (repeat); adds to [dlp] watch and export_dir.")
@click.option("--scan", is_flag=True, help="First examine the files already in the folders.")
@click.option("--once", is_flag=True, help="Examine the files already there, then exit.")
@pass_appliance
def watch(appliance: Appliance, folders: tuple[str, ...], scan: bool, once: bool) -> None:
    """Watch folders for files carrying client data; record each as `file.external`."""
    from dlp.sensors.files import FileSensor, SensorConfig

    config = SensorConfig.from_settings(appliance.settings, folders)
    if not config.folders:
        raise ConfigError(detail="no folder to watch: set [dlp] watch = [\"/media\", ...] in "
                                 "citadel.toml, or give --folder")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if keys.start(appliance.settings) is None:
        if once:
            raise Sealed()
        logging.getLogger(__name__).warning("sealed: files wait until the appliance is unsealed")
    sensor = FileSensor(appliance, config)
    if once:
        for sighting in sensor.scan():
            click.echo(f"{sighting.path}: {sighting.how}, {sighting.count} records, "
                       f"user {sighting.user}")
        return
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    click.echo(f"Watching {', '.join(str(f) for f in config.folders)} (Ctrl-C stops).")
    sensor.run(stopping, scan=scan)


COMMANDS = (trace, watch)
