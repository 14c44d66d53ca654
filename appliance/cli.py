"""The ``appliance`` command line.

Every command works on one appliance, found by ``--data-dir``, else
``CITADEL_DATA_DIR``, else ``./citadel-data``. Errors print one line that says
what to do and exit with the error's code; no traceback reaches the terminal.
"""

from __future__ import annotations

import click

from appliance import backups  # noqa: F401  (registers the drill checks every backup runs)
from appliance.card_commands import card
from appliance.cards.cli import COMMANDS as CARD_COMMANDS
from appliance.commands import COMMANDS as APPLIANCE_COMMANDS
from appliance.kernel.cli import DATA_DIR_HELP, CitadelGroup, CliContext
from appliance.key_commands import keys

# The packages' command groups: the one place the command line imports the domains.
from audit.cli import audit_group
from backup.cli import backup
from dlp.cli import dlp
from dlp.trace_cli import COMMANDS as TRACE_COMMANDS
from provisioning.cli import provision

__all__ = ["main"]


@click.group(cls=CitadelGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help=DATA_DIR_HELP)
@click.pass_context
def main(ctx: click.Context, data_dir: str | None) -> None:
    """Citadel: a CRM inside a security and compliance appliance."""
    ctx.obj = CliContext(data_dir)
    ctx.call_on_close(ctx.obj.close)


for _command in TRACE_COMMANDS:  # `appliance dlp trace FILE`, `appliance dlp watch`
    dlp.add_command(_command)
for _command in (*APPLIANCE_COMMANDS, card, *CARD_COMMANDS, keys, audit_group, backup, dlp, provision):
    main.add_command(_command)
