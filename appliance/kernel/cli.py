"""What every ``appliance`` command shares, apart from the root group: the data
directory option, the opened appliance, and errors turned into one line and an exit
code. Package CLIs import from here; ``appliance.cli`` (the entry point) imports them."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import update_wrapper
from pathlib import Path
from typing import Any, TypeVar

import click
from click.exceptions import NoArgsIsHelpError
from sqlalchemy.exc import OperationalError

from appliance.kernel.config import resolve_data_dir
from appliance.kernel.errors import CitadelError, ExitCode
from appliance.kernel.runtime import Appliance

F = TypeVar("F", bound=Callable[..., Any])


class CliContext:
    """What every command gets: the chosen data directory, and the appliance on demand."""

    def __init__(self, data_dir: str | None) -> None:
        self.data_dir: Path = resolve_data_dir(data_dir)
        self._appliance: Appliance | None = None

    @property
    def appliance(self) -> Appliance:
        if self._appliance is None:
            self._appliance = Appliance.open(self.data_dir)
        return self._appliance

    def close(self) -> None:
        if self._appliance is not None:
            self._appliance.dispose()


def _context(ctx: click.Context) -> CliContext:
    """The ``CliContext`` the root group made; a command run without it is a bug."""
    found = ctx.find_object(CliContext)
    if found is None:
        raise RuntimeError("run appliance commands under the `appliance` group (appliance.cli.main)")
    return found


DATA_DIR_HELP = "The appliance's data directory [env CITADEL_DATA_DIR; default ./citadel-data]."


def data_dir_option(func: F) -> F:
    """Accept ``--data-dir`` on the command itself as well as before it."""

    def remember(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value is not None:
            _context(ctx).data_dir = resolve_data_dir(value)

    return click.option("--data-dir", type=click.Path(file_okay=False), expose_value=False,
                        is_eager=True, callback=remember, help=DATA_DIR_HELP)(func)


def pass_appliance(func: F) -> F:
    """Give a command the opened ``Appliance`` as its first argument."""

    @click.pass_context
    def wrapper(ctx: click.Context, *args: Any, **kwargs: Any) -> Any:
        return ctx.invoke(func, _context(ctx).appliance, *args, **kwargs)

    return data_dir_option(update_wrapper(wrapper, func))  # type: ignore[return-value]


class CitadelGroup(click.Group):
    """A group that turns errors into a one-line message and an exit code.

    ``CitadelError`` says what to do; a database that cannot be reached says so;
    anything else is a bug: one line, and the traceback only with ``CITADEL_DEBUG=1``.
    """

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Usage mistakes (an unknown flag, a missing argument) are one line too."""
        if not kwargs.get("standalone_mode", True):
            return super().main(*args, **kwargs)
        try:
            super().main(*args, **{**kwargs, "standalone_mode": False})
        except NoArgsIsHelpError as exc:  # a group named alone: its help, as click shows it
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else self.name
            click.secho(f"Error: {exc.format_message()} See `{where} --help`.", fg="red", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:  # Ctrl-C or end of input at a prompt: nothing was done
            click.echo("Aborted!", err=True)
            sys.exit(ExitCode.FAILED)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except BrokenPipeError:  # `appliance user list | head`: the reader has had enough
            # as the Python docs advise: no second error when the interpreter flushes stdout
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(ExitCode.FAILED)
        sys.exit(0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CitadelError as exc:
            click.secho(f"Error: {exc.message}", fg="red", err=True)
            sys.exit(exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit,
                BrokenPipeError):
            raise
        except OperationalError as exc:
            click.secho("Error: the database cannot be reached or refused the work "
                        f"({str(exc.orig).splitlines()[0] if exc.orig else exc}); check that it is "
                        "running and that database_url is right.", fg="red", err=True)
            sys.exit(ExitCode.DATABASE_UNAVAILABLE)
        except Exception as exc:
            if os.environ.get("CITADEL_DEBUG"):
                raise
            click.secho(f"Error: unexpected {type(exc).__name__}: {exc}. Run again with "
                        "CITADEL_DEBUG=1 for the details, and report it.", fg="red", err=True)
            sys.exit(ExitCode.BUG)
