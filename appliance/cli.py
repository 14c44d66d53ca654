"""The ``appliance`` command line.

Every command works on one appliance, found by ``--data-dir``, else
``CITADEL_DATA_DIR``, else ``./citadel-data``. Errors print one line that says
what to do and exit with the error's code; no traceback reaches the terminal.
"""

from __future__ import annotations

import click

from appliance.cli_support import DATA_DIR_HELP, CitadelGroup, CliContext, data_dir_option, pass_appliance

__all__ = ["main", "register", "CliContext", "data_dir_option", "pass_appliance"]

@click.group(cls=CitadelGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help=DATA_DIR_HELP)
@click.pass_context
def main(ctx: click.Context, data_dir: str | None) -> None:
    """Citadel: a CRM inside a security and compliance appliance."""
    ctx.obj = CliContext(data_dir)
    ctx.call_on_close(ctx.obj.close)


def register(*extra: click.Command) -> None:
    for command in extra:
        main.add_command(command)


# The appliance's own commands register themselves on ``main``; each package
# brings its own group. (Imported last: they import ``main`` from here.)
from appliance import backups, card_commands, commands  # noqa: E402,F401,I001
from appliance.cards.cli import COMMANDS as CARD_COMMANDS  # noqa: E402
from appliance.keys.cli import keys  # noqa: E402
from audit.cli import audit_group  # noqa: E402
from backup.cli import backup  # noqa: E402
from dlp.cli import dlp  # noqa: E402
from dlp.trace_cli import COMMANDS as TRACE_COMMANDS  # noqa: E402
from provisioning.cli import provision  # noqa: E402

for _command in TRACE_COMMANDS:  # `appliance dlp trace FILE`, `appliance dlp watch`
    dlp.add_command(_command)
register(*CARD_COMMANDS, keys, audit_group, backup, dlp, provision)
