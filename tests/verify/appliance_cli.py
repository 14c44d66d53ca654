"""``appliance`` with every package's command group, for the verification suite.

    .venv/bin/python -m tests.verify.appliance_cli --data-dir DIR backup run

The root CLI registers each package's group; a group not registered there yet
(``backup``) is added here so that the suite drives the real commands either way.
"""

from __future__ import annotations

from appliance.cli import main


def cli() -> None:
    if "backup" not in main.commands:
        from backup.cli import backup

        main.add_command(backup)
    main(prog_name="appliance")


if __name__ == "__main__":
    cli()
