"""Sealing: the master key exists only after M of N holders, or the recovery key, open it.

At initialisation a random 256-bit *unseal key* is split M-of-N among the
share holders and wraps the master key (``keys/seal.json``); a separate
random *recovery key*, printed once, wraps another copy. Unsealing rebuilds
the unseal key from M shares (or parses the recovery key), unwraps the
master key, proves it against the keyring's check value, and puts it in the
kernel user keyring for every process of the appliance. Sealing removes it.
Nothing here ever writes the master key to disk, except the demo key file
of a demo appliance.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.kernel.errors import BadRequest
from appliance.keys import files, kernel, state
from appliance.keys.errors import (
    BadShareFile,
    DecryptionFailed,
    KernelKeyringUnavailable,
    KeyringTampered,
    KeysAlreadyInitialised,
    KeysNotInitialised,
    NotEnoughShares,
    WrongMasterKey,
)
from appliance.keys.holders import Ask, ShareHolder, holder_for
from appliance.keys.keyring import PURPOSES, Keyring, read_document, read_key_file
from appliance.keys.primitives import (
    KEY_BYTES,
    b64d,
    b64e,
    equal,
    frame,
    hkdf,
    open_sealed,
    random_bytes,
    seal,
)
from appliance.keys.recovery import new_recovery_key, parse_recovery_key
from appliance.keys.selftest import run_self_test
from appliance.keys.sharing import Share, combine_shares, split_secret

SEAL_FORMAT = "citadel-seal/1"
SHARE_FORMAT = "citadel-share/1"
SHARE_SUFFIX = ".share"

log = logging.getLogger("citadel.keys")

DEMO_WARNING = (
    "WARNING: DEMO MODE. This appliance unseals itself from keys/demo-master.key, "
    "its master key IN THE CLEAR. Encryption protects nothing here: never put real data in it."
)


@dataclass(frozen=True)
class KeyInit:
    """What initialisation hands to people: the recovery key (print it once) and share files."""

    appliance_id: str
    recovery_key: str = field(repr=False)
    share_files: list[Path]
    demo_key_file: Path | None = None


@dataclass(frozen=True)
class ShareEnvelope:
    """A share file: which appliance and holder it belongs to, and the holder's sealed blob."""

    appliance_id: str
    holder: str
    kind: str
    index: int
    threshold: int
    blob: bytes = field(repr=False)
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"format": SHARE_FORMAT, "appliance_id": self.appliance_id, "holder": self.holder,
                "kind": self.kind, "index": self.index, "threshold": self.threshold,
                "blob": b64e(self.blob)}

    @classmethod
    def load(cls, path: Path) -> ShareEnvelope:
        try:
            doc = files.read_json(Path(path))
            if doc.get("format") != SHARE_FORMAT:
                raise ValueError(f"unknown format {doc.get('format')!r}")
            return cls(str(doc["appliance_id"]), str(doc["holder"]), str(doc["kind"]),
                       int(doc["index"]), int(doc["threshold"]), b64d(doc["blob"]), str(path))
        except FileNotFoundError:
            raise BadShareFile(path=path, detail="no such file") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BadShareFile(path=path,
                               detail=f"it is not a Citadel share file ({exc})") from None


@dataclass(frozen=True)
class KeyStatus:
    """What ``appliance keys status`` reports; safe to show to anyone (no secrets)."""

    initialised: bool
    sealed: bool
    demo: bool
    threshold: int
    holders: list[dict[str, Any]]
    versions: dict[str, dict[str, Any]]
    rotations: list[str]
    kernel_keyring: bool

    def to_json(self) -> dict[str, Any]:
        return {"initialised": self.initialised, "sealed": self.sealed, "demo": self.demo,
                "threshold": self.threshold, "holders": self.holders, "versions": self.versions,
                "rotations_in_progress": self.rotations, "kernel_keyring": self.kernel_keyring}


def _share_hash(appliance_id: str, share: Share) -> str:
    framed = frame("citadel share", appliance_id, share.index, share.value)
    return hashlib.sha256(framed).hexdigest()


def _wrap_key(secret: bytes, route: str) -> bytes:
    return hkdf(secret, f"citadel/v1/{route}-wrap".encode())


def _wrap_ad(appliance_id: str, route: str) -> bytes:
    return frame(SEAL_FORMAT, appliance_id, route)


# -- initialisation -------------------------------------------------------------


def init_keys(data_dir: Path, *, threshold: int, holders: list[ShareHolder],
              share_dir: Path | None = None, demo: bool = False) -> KeyInit:
    """Create the key hierarchy of a new appliance in ``data_dir/keys``.

    ``holders`` receive one share each (N = len(holders)); any ``threshold`` (M)
    of them unseal. Share files are written to ``share_dir`` (default
    ``data_dir/keys/shares``), one ``<holder>.share`` each: hand them to their
    holders and remove them from the box. A demo appliance (``demo=True``) also
    gets ``keys/demo-master.key`` and may have no holders. The appliance is
    left sealed; the returned recovery key is shown nowhere else: print it.
    """
    data_dir = Path(data_dir).resolve()
    if files.keyring_path(data_dir).exists():  # written last: an unfinished run may be redone
        raise KeysAlreadyInitialised(data_dir=data_dir)
    _check_holders(threshold, holders, allow_none=demo)
    run_self_test()
    appliance_id = str(uuid.uuid4())
    master = random_bytes(KEY_BYTES)
    seal_doc: dict[str, Any] = {"format": SEAL_FORMAT, "appliance_id": appliance_id,
                                "created": _now()}
    share_files = _share_out(seal_doc, master, threshold, holders,
                             Path(share_dir or files.keys_dir(data_dir) / "shares"))
    recovery_text = _recovery_wrap(seal_doc, master)
    demo_file = _write_demo_key(data_dir, master) if demo else None
    files.write_json(files.seal_path(data_dir), seal_doc)
    Keyring.create(data_dir, master, appliance_id)  # last: its presence means "initialised"
    return KeyInit(appliance_id, recovery_text, share_files, demo_file)


def reshare(keyring: Keyring, *, threshold: int, holders: list[ShareHolder],
            share_dir: Path, new_recovery_key: bool = True) -> KeyInit:
    """Give the unseal key to a new set of holders (an officer left, M or N changes).

    Needs the unsealed keyring. Earlier share files stop opening this box's
    seal; with ``new_recovery_key`` the printed recovery key is replaced too.
    A holder who kept an old copy of ``keys/seal.json`` could still combine old
    shares against it: rotate the data keys as well if that is a worry.
    """
    _check_holders(threshold, holders, allow_none=False)
    run_self_test()
    seal_doc = _read_seal(keyring.data_dir)
    master = keyring._master  # the package's own access to the key it protects
    seal_doc.update(created=_now(), holders=[])
    share_files = _share_out(seal_doc, master, threshold, holders, Path(share_dir))
    recovery_text = _recovery_wrap(seal_doc, master) if new_recovery_key else ""
    files.write_json(files.seal_path(keyring.data_dir), seal_doc)
    state.key_files_changed(keyring.data_dir)
    return KeyInit(keyring.appliance_id, recovery_text, share_files)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_holders(threshold: int, holders: list[ShareHolder], *, allow_none: bool) -> None:
    names = [h.name for h in holders]
    if len(set(names)) != len(names):
        raise BadRequest(detail="every share holder needs a different name")
    if not holders and not allow_none:
        raise BadRequest(detail="at least one share holder is needed (only a demo may have none)")
    if holders and not 1 <= threshold <= len(holders):
        raise BadRequest(detail=f"the threshold must be between 1 and {len(holders)}, "
                         f"not {threshold}")


def _share_out(seal_doc: dict[str, Any], master: bytes, threshold: int,
               holders: list[ShareHolder], share_dir: Path) -> list[Path]:
    """Split a fresh unseal key among ``holders``, wrap ``master`` with it, write share files."""
    appliance_id = seal_doc["appliance_id"]
    seal_doc["threshold"] = threshold if holders else 0
    seal_doc["holders"] = []
    seal_doc.pop("master_by_shares", None)
    if not holders:
        return []
    files.ensure_private_dir(share_dir)
    unseal_key = random_bytes(KEY_BYTES)
    seal_doc["master_by_shares"] = b64e(seal(_wrap_key(unseal_key, "unseal"), master,
                                             _wrap_ad(appliance_id, "shares")))
    share_files = []
    for holder, share in zip(holders, split_secret(unseal_key, threshold, len(holders)),
                             strict=True):
        envelope = ShareEnvelope(appliance_id, holder.name, holder.kind, share.index,
                                 threshold, holder.seal(share.value))
        path = share_dir / f"{holder.name}{SHARE_SUFFIX}"
        files.write_json(path, envelope.to_json())
        share_files.append(path)
        seal_doc["holders"].append({"name": holder.name, "kind": holder.kind,
                                    "index": share.index,
                                    "share_hash": _share_hash(appliance_id, share)})
    return share_files


def _recovery_wrap(seal_doc: dict[str, Any], master: bytes) -> str:
    """Wrap ``master`` under a fresh recovery key; return the key's printed form."""
    secret, text = new_recovery_key()
    seal_doc["master_by_recovery"] = b64e(seal(_wrap_key(secret, "recovery"), master,
                                               _wrap_ad(seal_doc["appliance_id"], "recovery")))
    return text


def _write_demo_key(data_dir: Path, master: bytes) -> Path:
    path = files.demo_key_path(data_dir)
    text = ("# DEMO ONLY. This is the appliance's master key IN THE CLEAR: anyone who can\n"
            "# read this file can read every encrypted field. Never use it for real data.\n"
            f"{master.hex()}\n")
    files.write_private(path, text.encode())
    return path


# -- unsealing ------------------------------------------------------------------


def _read_seal(data_dir: Path) -> dict[str, Any]:
    return read_key_file(data_dir, files.seal_path(data_dir), SEAL_FORMAT)


class Unsealer:
    """Collects shares one holder at a time until M are present, then unseals."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self._seal = _read_seal(self.data_dir)
        self._holders = {h["name"]: h for h in self._seal["holders"]}
        self._shares: dict[str, Share] = {}

    @property
    def appliance_id(self) -> str:
        return str(self._seal["appliance_id"])

    @property
    def threshold(self) -> int:
        return int(self._seal["threshold"])

    @property
    def given(self) -> list[str]:
        return list(self._shares)

    @property
    def missing(self) -> int:
        return max(self.threshold - len(self._shares), 0)

    def remaining_holders(self) -> list[str]:
        return [name for name in self._holders if name not in self._shares]

    def add_file(self, path: Path, ask: Ask) -> int:
        """Open the share in ``path`` (its holder is asked for their secret); return how many
        more are needed."""
        return self.add(ShareEnvelope.load(path), ask)

    def add(self, envelope: ShareEnvelope, ask: Ask) -> int:
        where = envelope.source or f"{envelope.holder}'s share"
        if envelope.appliance_id != self.appliance_id:
            raise BadShareFile(path=where, detail="it belongs to another appliance")
        record = self._holders.get(envelope.holder)
        if record is None or record["index"] != envelope.index or record["kind"] != envelope.kind:
            raise BadShareFile(path=where, detail=f"{envelope.holder} is not a holder of this seal")
        if envelope.holder in self._shares:
            raise BadShareFile(path=where, detail=f"{envelope.holder}'s share was already given")
        value = holder_for(envelope.kind, envelope.holder).open(envelope.blob, ask)
        share = Share(envelope.index, value)
        if not equal(_share_hash(self.appliance_id, share).encode(),
                     str(record["share_hash"]).encode()):
            raise BadShareFile(path=where, detail="the share inside does not match this seal")
        self._shares[envelope.holder] = share
        return self.missing

    def finish(self) -> Keyring:
        """Rebuild the master key and unseal; ``NotEnoughShares`` below the threshold."""
        if self.threshold == 0 or len(self._shares) < self.threshold:
            raise NotEnoughShares(have=len(self._shares), need=self.threshold)
        run_self_test()
        chosen = list(self._shares.values())[: self.threshold]
        unseal_key = combine_shares(chosen)
        try:
            master = open_sealed(_wrap_key(unseal_key, "unseal"),
                                 b64d(self._seal["master_by_shares"]),
                                 _wrap_ad(self.appliance_id, "shares"), what="sealed master key")
        except DecryptionFailed:
            raise WrongMasterKey(source="shares") from None
        return activate(self.data_dir, master, source="shares")


def unseal_with_recovery(data_dir: Path, recovery_key: str) -> Keyring:
    """Unseal with the printed recovery key alone."""
    data_dir = Path(data_dir).resolve()
    secret = parse_recovery_key(recovery_key)
    doc = _read_seal(data_dir)
    run_self_test()
    try:
        master = open_sealed(_wrap_key(secret, "recovery"), b64d(doc["master_by_recovery"]),
                             _wrap_ad(str(doc["appliance_id"]), "recovery"),
                             what="sealed master key")
    except DecryptionFailed:
        raise WrongMasterKey(source="recovery key") from None
    return activate(data_dir, master, source="recovery key")


def activate(data_dir: Path, master: bytes, *, source: str, demo: bool = False) -> Keyring:
    """Prove ``master`` against the keyring, hand it to the kernel keyring and this process."""
    run_self_test()
    keyring = Keyring.open(data_dir, master, demo=demo, source=source)
    kernel.kernel_keyring().store(state.master_name(data_dir, fresh=True), master)
    return state.install(keyring)


def unseal_copy(keyring: Keyring, data_dir: Path) -> Keyring:
    """Unseal another data directory holding a copy of this appliance's key files.

    The scheduled disaster-recovery drill rebuilds a scratch appliance from the
    backup target alone; this is the step the officers' quorum does on a new box,
    done with the master key already in memory (it never leaves the process and
    the kernel keyring). Seal it again with ``seal_now(data_dir)``.
    """
    return activate(Path(data_dir).resolve(), keyring._master, source="the unsealed appliance")


def seal_now(data_dir: Path) -> bool:
    """Forget the master key in every process of this appliance; False if already sealed."""
    data_dir = Path(data_dir).resolve()
    removed = kernel.kernel_keyring().remove(state.master_name(data_dir, fresh=True))
    state.clear()
    return removed


def auto_unseal_demo(data_dir: Path) -> Keyring:
    """Unseal a demo appliance from ``keys/demo-master.key``, loudly.

    Without a kernel keyring (not Linux) the key is kept in this process only.
    """
    data_dir = Path(data_dir).resolve()
    path = files.demo_key_path(data_dir)
    try:
        lines = [ln.strip() for ln in path.read_text().splitlines()]
        master = bytes.fromhex(next(ln for ln in lines if ln and not ln.startswith("#")))
    except FileNotFoundError:
        raise KeysNotInitialised(data_dir=data_dir) from None
    except (StopIteration, ValueError):
        raise KeyringTampered(path=path, detail="it does not hold a hex key") from None
    # Each process of a demo unseals itself; the command that starts them says it once, and
    # every page shows a banner, so the log keeps it quietly.
    log.debug(DEMO_WARNING)
    try:
        return activate(data_dir, master, source="demo key file", demo=True)
    except KernelKeyringUnavailable:
        return state.install(Keyring.open(data_dir, master, demo=True, source="demo key file"))


# -- status ---------------------------------------------------------------------


def status(data_dir: Path) -> KeyStatus:
    """Sealed or not, M of N, holders and key versions: all without any secret."""
    data_dir = Path(data_dir).resolve()
    try:
        document = read_document(data_dir)
        seal_doc = _read_seal(data_dir)
    except KeysNotInitialised:
        return KeyStatus(False, True, False, 0, [], {}, [], kernel.available())
    try:
        sealed = state.sync(data_dir) is None
        available = True
    except KernelKeyringUnavailable:
        sealed, available = state.is_sealed(), False
    versions = {p: {"current": document["purposes"][p]["current"],
                    "versions": {int(v): e["state"]
                                 for v, e in document["purposes"][p]["versions"].items()}}
                for p in PURPOSES}
    rotations = [p for p in PURPOSES if files.rotation_path(data_dir, p).exists()]
    holders = [{"name": h["name"], "kind": h["kind"], "index": h["index"]}
               for h in seal_doc["holders"]]
    return KeyStatus(True, sealed, files.demo_key_path(data_dir).exists(),
                     int(seal_doc["threshold"]), holders, versions, rotations, available)
