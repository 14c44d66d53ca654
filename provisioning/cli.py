"""``appliance provision``: apply the provisioning playbook to an inventory.

Shows each task as it runs and, per host, whether it changed or failed; ends
with a per-host summary and exits non-zero when any host failed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from appliance.kernel.errors import CitadelError
from provisioning.runner import HostSummary, ProvisionResult, TaskEvent, run_playbook

_STYLES = {"ok": "green", "changed": "yellow", "failed": "red", "unreachable": "red"}


@click.command()
@click.option("--inventory", "-i", required=True, type=click.Path(dir_okay=False),
              help="Ansible inventory of the boxes (see provisioning/inventory.example).")
@click.option("--check", is_flag=True,
              help="Report what would change, with diffs, and change nothing.")
@click.option("--tags", "-t", default="",
              help="Only these comma-separated tags (a role, a concern, or verify).")
@click.option("--skip-tags", default="", help="Leave out these comma-separated tags.")
@click.option("--limit", "-l", default=None, help="Only these hosts or groups.")
@click.option("--verbose", "-v", is_flag=True, help="Also list skipped tasks.")
def provision(inventory: str, check: bool, tags: str, skip_tags: str, limit: str | None,
              verbose: bool) -> None:
    """Provision Debian 12 boxes into hardened Citadel appliances.

    `--tags verify` re-checks a box without changing it and fails on findings.
    """
    try:
        result = run_playbook(inventory, check=check, tags=_split(tags),
                              skip_tags=_split(skip_tags), limit=limit,
                              on_event=_printer(verbose))
    except CitadelError as exc:
        click.secho(f"Error: {exc.message}", fg="red", err=True)
        sys.exit(exc.exit_code)
    _print_summary(result)
    if not result.succeeded:
        sys.exit(1)


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _printer(verbose: bool) -> Callable[[TaskEvent], None]:
    """Print a task's name once, then each host's result on it."""

    def show(event: TaskEvent) -> None:
        if event.kind == "task":
            click.echo(f"TASK [{event.task}]")
        elif event.kind != "skipped" or verbose:
            line = f"  {event.kind}: {event.host}"
            click.secho(line, fg=_STYLES.get(event.kind))
            if event.message:
                for text in event.message.splitlines():
                    click.secho(f"    {text}", fg="red")

    return show


def _print_summary(result: ProvisionResult) -> None:
    click.echo("\nSUMMARY")
    if not result.hosts:
        click.secho(f"  no host ran ({result.status}); check the inventory and --limit",
                    fg="red")
    for host in result.hosts.values():
        click.secho(_summary_line(host), fg="green" if host.succeeded else "red")
    for failure in result.failures:
        first_line = failure.message.splitlines()[0] if failure.message else ""
        click.secho(f"  failed on {failure.host}: {failure.task}: {first_line}", fg="red")
    verdict = "succeeded" if result.succeeded else "FAILED"
    click.secho(f"Provisioning {verdict}.", fg="green" if result.succeeded else "red", bold=True)


def _summary_line(host: HostSummary) -> str:
    return (f"  {host.host:<30} ok={host.ok} changed={host.changed} failed={host.failed} "
            f"unreachable={host.unreachable} skipped={host.skipped}")
