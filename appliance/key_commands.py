"""``appliance keys``: initialise, inspect, unseal, seal and rotate the appliance's keys."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError

from appliance.kernel.cli import pass_appliance
from appliance.kernel.errors import CitadelError, Sealed
from appliance.kernel.runtime import Appliance
from appliance.keys import sealing, state
from appliance.keys.errors import BadShareFile, WrongPassphrase
from appliance.keys.holders import KdfParams, PassphraseHolder, ShareHolder, register_holder_kind
from appliance.keys.keyring import PURPOSES
from appliance.keys.rotation import Rotation

PASSPHRASE_ATTEMPTS = 3
MIN_PASSPHRASE = 12


def _ask_secret(prompt: str) -> str:
    return click.prompt(prompt, hide_input=True, err=True)


def _audit(app: Appliance, action: str, meta: dict[str, Any]) -> None:
    """Record a key operation in the audit log; the operation itself has already happened."""
    import audit

    meta = {"os_user": getpass.getuser(), **meta}
    try:
        with app.session() as session:
            audit.record(session, action, user=None, entity=None, meta=meta)
    except SQLAlchemyError as exc:
        click.secho(f"Warning: the audit event `{action}` could not be written "
                    f"({exc.__class__.__name__}); check the database.", fg="yellow", err=True)


@click.group("keys")
def keys() -> None:
    """The encryption keys: status, unseal, seal, rotate."""


@keys.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@pass_appliance
def status_command(app: Appliance, as_json: bool) -> None:
    """Show whether the appliance is sealed, who holds shares, and the key versions."""
    report = sealing.status(app.data_dir)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, sort_keys=True))
        return
    if not report.initialised:
        click.echo(f"No keys in {app.data_dir}: run `appliance init`.")
        return
    seal_word = (click.style("SEALED", fg="red") if report.sealed
                 else click.style("UNSEALED", fg="green"))
    click.echo(f"Keys of {app.data_dir}: {seal_word}")
    if report.demo:
        click.secho(sealing.DEMO_WARNING, fg="red", bold=True)
    if not report.kernel_keyring:
        click.secho("The kernel keyring is not available: unsealing needs Linux with libkeyutils.",
                    fg="yellow")
    names = ", ".join(f"{h['name']} ({h['kind']})" for h in report.holders) or "none"
    click.echo(f"Unsealing needs {report.threshold} of {len(report.holders)} share holders "
               f"({names}), or the recovery key.")
    click.echo("Key versions:")
    for purpose, info in report.versions.items():
        others = ", ".join(f"v{v} {s}" for v, s in sorted(info["versions"].items()))
        click.echo(f"  {purpose:<14} current v{info['current']}   ({others})")
    for purpose in report.rotations:
        click.secho(f"Rotation of `{purpose}` is unfinished: "
                    f"run `appliance keys rotate {purpose}`.", fg="yellow")


@keys.command("unseal")
@click.option("--recovery-key", "use_recovery", is_flag=True,
              help="Unseal with the printed recovery key instead of share holders.")
@click.option("--share", "share_files", multiple=True, type=click.Path(dir_okay=False),
              help="A share file to use (repeatable); otherwise you are asked for each.")
@pass_appliance
def unseal_command(app: Appliance, use_recovery: bool, share_files: tuple[str, ...]) -> None:
    """Rebuild the master key: M share holders one at a time, or the recovery key."""
    if state.sync(app.data_dir) is not None:
        click.echo("Already unsealed.")
        return
    try:
        _unseal(app, use_recovery, share_files)
    except CitadelError as exc:
        _audit(app, "keys.unseal.failed", {"via": "recovery key" if use_recovery else "shares",
                                           "reason": exc.code})
        raise


def _unseal(app: Appliance, use_recovery: bool, share_files: tuple[str, ...]) -> None:
    if use_recovery:
        text = click.prompt("Recovery key", hide_input=True, err=True)
        sealing.unseal_with_recovery(app.data_dir, text)
        _audit(app, "keys.unseal", {"via": "recovery key"})
        click.secho("Unsealed with the recovery key.", fg="green")
        return
    unsealer = sealing.Unsealer(app.data_dir)
    click.echo(f"{unsealer.threshold} share holders are needed; holders: "
               f"{', '.join(unsealer.remaining_holders())}.")
    if not share_files:
        _unseal_with_cards(app, unsealer)
    queue = [Path(p) for p in share_files]
    while unsealer.missing:
        path = queue.pop(0) if queue else Path(click.prompt(
            f"Share file ({unsealer.missing} more needed)", type=click.Path(dir_okay=False),
            err=True))
        if _add_share(unsealer, path):
            click.echo(f"Share accepted ({len(unsealer.given)} of {unsealer.threshold}).")
    unsealer.finish()
    _audit(app, "keys.unseal", {"via": "shares", "holders": unsealer.given})
    click.secho("Unsealed.", fg="green")


def _unseal_with_cards(app: Appliance, unsealer: sealing.Unsealer) -> None:
    """Ask for officers' cards one at a time until enough shares are open (or none is left)."""
    from appliance.card_keys import CardHolder, cards_present, match_envelopes
    from appliance.cards.seal import sealed_fingerprint

    folder = card_share_dir(app)
    waiting = [sealing.ShareEnvelope.load(p) for p in sorted(folder.glob("*.share"))] \
        if folder.exists() else []
    while unsealer.missing and waiting:
        names = ", ".join(env.holder for env in waiting)
        click.prompt(f"Insert a key card ({names}; {unsealer.missing} more needed), then press "
                     "Enter", default="", show_default=False, err=True)
        matches = match_envelopes(waiting, list(cards_present()), sealed_fingerprint)
        if not matches:
            click.secho("No key card of these officers is in a reader.", fg="red", err=True)
            continue
        envelope, reader = matches[0]
        # the share opens with the card in the reader where it was found
        register_holder_kind("card", lambda name, r=reader: CardHolder(name, reader=r))
        try:
            unsealer.add(envelope, _ask_secret)
        except CitadelError as exc:
            click.secho(f"Error: {exc.message}", fg="red", err=True)
            continue
        finally:
            register_holder_kind("card", CardHolder)
        waiting.remove(envelope)
        click.echo(f"{envelope.holder}'s card accepted ({len(unsealer.given)} of {unsealer.threshold}); "
                   f"remove it.")


def _add_share(unsealer: sealing.Unsealer, path: Path) -> bool:
    """Try one share file, letting its holder retype a wrong passphrase a few times."""
    for attempt in range(1, PASSPHRASE_ATTEMPTS + 1):
        try:
            unsealer.add_file(path, _ask_secret)
            return True
        except BadShareFile as exc:
            click.secho(f"Error: {exc.message}", fg="red", err=True)
            return False
        except WrongPassphrase as exc:
            if attempt == PASSPHRASE_ATTEMPTS:
                raise
            click.secho(f"Error: {exc.message}", fg="red", err=True)
    return False


@keys.command("seal")
@pass_appliance
def seal_command(app: Appliance) -> None:
    """Forget the master key now, in every process of this appliance."""
    was_unsealed = sealing.seal_now(app.data_dir)
    if was_unsealed:
        _audit(app, "keys.seal", {})
    click.echo("Sealed." if was_unsealed else "Already sealed.")


@keys.command("rotate")
@click.argument("purpose", type=click.Choice(PURPOSES))
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 100_000),
              help="Rows re-encrypted per transaction.")
@pass_appliance
def rotate_command(app: Appliance, purpose: str, batch_size: int) -> None:
    """Make a new key version for PURPOSE and re-encrypt what it protects, online.

    Interrupted? Run the same command again: it resumes where it stopped.
    """
    keyring = state.sync(app.data_dir)
    if keyring is None:
        raise Sealed()
    from appliance.schema import all_metadata

    all_metadata()  # import every package's models, so their encrypted fields are registered
    from crm.attachments import register_source

    register_source(app.data_dir)  # and the attachment files
    with click.progressbar(length=1, label=f"Rotating {purpose}") as bar:
        rotation = Rotation(app.engine, keyring, purpose, batch_size=batch_size,
                            on_batch=bar.update)
        bar.length = max(rotation.total_items(), 1)
        result = rotation.run()
    _audit(app, "keys.rotate", {"purpose": purpose, "version": result.version,
                                "rewritten": result.rewritten, "resumed": result.resumed})
    click.echo(f"`{purpose}` is now at key version {result.version}; "
               f"{result.rewritten} rows or files re-encrypted.")
    if result.skipped_tables:
        click.echo(f"Tables not in this database (skipped): {', '.join(result.skipped_tables)}")
    if result.leftovers:
        click.secho(f"{result.leftovers} values were rewritten under an old version meanwhile: "
                    f"run `appliance keys rotate {purpose}` again.", fg="yellow")


@keys.command("reshare")
@click.option("--threshold", "-m", type=int, required=True, help="Shares needed to unseal (M).")
@click.option("--holder", "holders", multiple=True,
              help="A passphrase share holder's name (repeat; N = holders + cards).")
@click.option("--card", "cards", multiple=True,
              help="An officer whose enrolled smart card holds a share (repeat).")
@click.option("--share-dir", type=click.Path(file_okay=False), required=True,
              help="Where to write the new share files.")
@click.option("--keep-recovery-key", is_flag=True,
              help="Keep the current recovery key instead of printing a new one.")
@pass_appliance
def reshare_command(app: Appliance, threshold: int, holders: tuple[str, ...], cards: tuple[str, ...],
                    share_dir: str, keep_recovery_key: bool) -> None:
    """Hand the unseal key to a new set of holders; earlier share files stop working.

    Needs the appliance unsealed. Use it when a key holder leaves or M of N changes.
    """
    keyring = state.sync(app.data_dir)
    if keyring is None:
        raise Sealed()
    result = sealing.reshare(keyring, threshold=threshold,
                             holders=_holders(app, list(holders), list(cards)),
                             share_dir=Path(share_dir), new_recovery_key=not keep_recovery_key)
    _keep_card_shares(app, result.share_files, list(cards))
    _audit(app, "keys.reshare", {"threshold": threshold, "holders": list(holders),
                                 "cards": list(cards), "new_recovery_key": not keep_recovery_key})
    if result.recovery_key:
        _print_recovery_key(result.recovery_key)
    click.echo(f"Share files: {', '.join(str(p) for p in result.share_files)}")


@keys.command("init")
@click.option("--threshold", "-m", type=int, required=True, help="Shares needed to unseal (M).")
@click.option("--holder", "holders", multiple=True,
              help="A passphrase share holder's name (repeat; N = holders + cards).")
@click.option("--card", "cards", multiple=True,
              help="An officer whose enrolled smart card holds a share (repeat).")
@click.option("--share-dir", type=click.Path(file_okay=False), required=True,
              help="Where to write the share files (removable media; not the data directory).")
@pass_appliance
def init_command(app: Appliance, threshold: int, holders: tuple[str, ...], cards: tuple[str, ...],
                 share_dir: str) -> None:
    """Create the key hierarchy: shares for officers' cards and passphrase holders."""
    result = init_interactive(app, threshold, list(holders), Path(share_dir), list(cards))
    click.echo(f"Share files: {', '.join(str(p) for p in result.share_files)}")


def init_interactive(app: Appliance, threshold: int, names: list[str],
                     share_dir: Path, cards: list[str] | None = None) -> sealing.KeyInit:
    """Ask each holder for a passphrase, create the keys, print the recovery key once."""
    result = sealing.init_keys(app.data_dir, threshold=threshold,
                               holders=_holders(app, names, cards or []), share_dir=share_dir)
    _keep_card_shares(app, result.share_files, cards or [])
    _print_recovery_key(result.recovery_key)
    return result


def _holders(app: Appliance, names: list[str], cards: list[str]) -> list[ShareHolder]:
    if not names and not cards:
        raise click.UsageError("give share holders: --card OFFICER and/or --holder NAME")
    from appliance.card_keys import officer_card_holders

    return [*_passphrase_holders(app, names), *officer_card_holders(app, cards)]


def card_share_dir(app: Appliance) -> Path:
    """Shares sealed to cards stay on the box: without the card they open nothing."""
    return app.data_dir / "keys" / "card-shares"


def _keep_card_shares(app: Appliance, share_files: list[Path], cards: list[str]) -> None:
    target = card_share_dir(app)
    for old in target.glob("*.share") if target.exists() else ():
        old.unlink()
    if not cards:
        return
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    for path in share_files:
        if path.stem in cards:
            (target / path.name).write_bytes(path.read_bytes())


def _passphrase_holders(app: Appliance, names: list[str]) -> list[PassphraseHolder]:
    """Each holder types a passphrase (twice) for their share file."""
    kdf = KdfParams.from_settings(app.settings.section("keys"))
    holders = []
    for name in names:
        while True:
            passphrase = click.prompt(f"Passphrase for {name}'s share", hide_input=True,
                                      confirmation_prompt=True, err=True)
            if len(passphrase) >= MIN_PASSPHRASE:
                break
            click.secho(f"Use at least {MIN_PASSPHRASE} characters.", fg="red", err=True)
        holders.append(PassphraseHolder(name, passphrase, kdf))
    return holders


def _print_recovery_key(text: str) -> None:
    click.echo("RECOVERY KEY (unseals on its own; shown only once: print it, keep it offline):")
    click.secho(f"    {text}", bold=True)
