"""Commands: ``appliance card-agent`` (workstations) and ``appliance virtual-card`` (demos).

Neither needs an appliance data directory: the card agent runs on the staff
workstation that holds the card reader.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from appliance.cards import AGENT_PORT
from appliance.cards.errors import CardError
from appliance.cards.virtual_state import ALGORITHMS
from appliance.kernel.errors import BadRequest, CitadelError

F = TypeVar("F", bound=Callable[..., Any])


def _one_line_errors(func: F) -> F:
    """Print a ``CitadelError`` as one line and exit with its code, as the root CLI does."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CitadelError as exc:
            click.secho(f"Error: {exc.message}", fg="red", err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


def _stop_on_signals(stop: Callable[[], None]) -> None:
    def handler(_signum: int, _frame: object) -> None:
        threading.Thread(target=stop, daemon=True).start()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@contextmanager
def _demo_card(state_file: Path) -> Iterator[str]:
    """A private pcscd with the virtual card from ``state_file`` inserted; yields the reader."""
    from appliance.cards.stack import PcscStack
    from appliance.cards.virtual import VirtualCard

    with PcscStack() as stack:
        card = VirtualCard.from_file(state_file, stack.port)
        stack.insert(card)
        click.secho(f"DEMO ONLY: virtual card {card.card_id} from {state_file} "
                    f"(PIN tries left {card.state.pin_tries_left}); never use it for real data.",
                    fg="yellow", err=True)
        try:
            yield stack.reader
        finally:
            card.remove()


@click.command("card-agent")
@click.option("--port", type=click.IntRange(1, 65535), default=AGENT_PORT, show_default=True,
              help="Port on 127.0.0.1.")
@click.option("--origin", "origins", multiple=True, envvar="CITADEL_CARD_AGENT_ORIGINS",
              help="The appliance's web origin, e.g. https://citadel.example.com "
                   "(repeatable) [env CITADEL_CARD_AGENT_ORIGINS, space-separated].")
@click.option("--reader", default=None,
              help="Exact reader name (see `opensc-tool -l`); default: first reader with a card.")
@click.option("--virtual-card", "virtual_card", default=None,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Demo only: serve this virtual card (created if missing) through a private "
                   "pcscd instead of a real reader.")
@_one_line_errors
def card_agent(port: int, origins: tuple[str, ...], reader: str | None,
               virtual_card: Path | None) -> None:
    """Run the card agent the Citadel web page uses to sign in with a smart card."""
    if not origins:
        raise BadRequest(detail="give the appliance's web address: --origin https://HOST")
    from appliance.cards.agent import CardAgent

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with _demo_card(virtual_card) if virtual_card else _no_demo() as demo_reader:
        try:
            agent = CardAgent(list(origins), reader or demo_reader, port)
        except ValueError as exc:
            raise BadRequest(detail=f"--origin: {exc}") from exc
        except OSError as exc:
            raise CardError(detail=f"cannot listen on 127.0.0.1:{port} ({exc.strerror}); "
                                   "another card agent may be running, or choose --port") from exc
        _stop_on_signals(agent.shutdown)
        click.echo(f"Card agent on {agent.url} for {', '.join(sorted(agent.origins))}; "
                   "Ctrl-C stops it.")
        with agent:
            agent.serve_forever()


@contextmanager
def _no_demo() -> Iterator[None]:
    yield None


@click.command("virtual-card")
@click.option("--port", type=click.IntRange(1, 65535), required=True,
              help="vpcd port of the reader (see docs/smart-cards.md).")
@click.option("--state", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Card file: loaded if it exists, else a new card is saved there.")
@click.option("--host", default="127.0.0.1", show_default=True, help="vpcd host.")
@click.option("--pin", default="123456", show_default=True, help="PIN of a new card.")
@click.option("--holder", default="Citadel Demo User", show_default=True,
              help="Name in a new card's certificates.")
@click.option("--algorithm", type=click.Choice(sorted(ALGORITHMS)), default="p256",
              show_default=True, help="Key type of a new card's slot 9A.")
@_one_line_errors
def virtual_card(port: int, state: Path, host: str, pin: str, holder: str,
                 algorithm: str) -> None:
    """Run a virtual PIV card in a vpcd reader (tests and demos only)."""
    from appliance.cards.virtual import serve

    serve(state, port, host, say=click.echo, pin=pin, holder=holder, authentication=algorithm)


COMMANDS = (card_agent, virtual_card)
