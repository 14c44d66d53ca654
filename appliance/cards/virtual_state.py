"""What a virtual PIV card remembers: identity, PIN counter, keys and certificates.

Saved as JSON (mode 0600, written atomically) so a demo user keeps the same
card, and a blocked PIN stays blocked across restarts, as on a real card. The
private keys are in the clear in that file: a virtual card is for tests and
demos, never for protecting real data.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from appliance.cards.errors import VirtualCardError
from appliance.cards.spec import Algorithm, Chuid, Slot, pad_pin

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

#: The FASC-N that non-federal PIV issuers use (agency code 9999), as YubiKey tools do.
NON_FEDERAL_FASCN = bytes.fromhex("d4e739da739ced39ce739d836858210842108421c84210c3eb")
ALGORITHMS = {"p256": Algorithm.ECC_P256, "rsa2048": Algorithm.RSA_2048}
STATE_VERSION = 1


def generate_key(algorithm: Algorithm) -> PrivateKey:
    """A fresh private key for ``algorithm``."""
    if algorithm is Algorithm.ECC_P256:
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def self_signed_certificate(key: PrivateKey, holder: str, slot: Slot) -> bytes:
    """A self-signed certificate (DER) for ``key``, as `ykman` would make on enrolment."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, holder),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME,
                                         f"Citadel virtual card, slot {slot.label}")])
    now = dt.datetime.now(dt.UTC)
    agreement = slot is Slot.KEY_MANAGEMENT and isinstance(key, ec.EllipticCurvePrivateKey)
    usage = x509.KeyUsage(
        digital_signature=slot is not Slot.KEY_MANAGEMENT, content_commitment=False,
        key_encipherment=slot is Slot.KEY_MANAGEMENT and not agreement,
        data_encipherment=False, key_agreement=agreement, key_cert_sign=False,
        crl_sign=False, encipher_only=False, decipher_only=False)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(usage, critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


def _load_private_key(pem: str) -> PrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"unsupported key type {type(key).__name__}")
    return key


@dataclass
class VirtualCardState:
    """Everything a virtual card keeps between insertions."""

    chuid: Chuid
    pin: str
    pin_tries_max: int
    pin_tries_left: int
    holder: str
    keys: dict[Slot, PrivateKey] = field(default_factory=dict)
    certificates: dict[Slot, bytes] = field(default_factory=dict)

    @classmethod
    def generate(cls, holder: str = "Citadel Demo User", pin: str = "123456",
                 authentication: str = "p256", key_management: str = "p256",
                 pin_tries: int = 3) -> VirtualCardState:
        """A new card with fresh keys and self-signed certificates in 9A and 9D."""
        pad_pin(pin)  # refuse a PIN a real card would refuse
        if {authentication, key_management} - ALGORITHMS.keys():
            raise VirtualCardError(action="be created", detail=f"algorithms are {list(ALGORITHMS)}")
        expiry = (dt.date.today() + dt.timedelta(days=3650)).strftime("%Y%m%d")
        state = cls(Chuid(NON_FEDERAL_FASCN, secrets.token_bytes(16), expiry), pin,
                    pin_tries, pin_tries, holder)
        for slot, choice in ((Slot.AUTHENTICATION, authentication),
                             (Slot.KEY_MANAGEMENT, key_management)):
            key = generate_key(ALGORITHMS[choice])
            state.keys[slot] = key
            state.certificates[slot] = self_signed_certificate(key, holder, slot)
        return state

    @property
    def card_id(self) -> str:
        return self.chuid.guid.hex()

    def to_json(self) -> dict[str, Any]:
        pem = serialization.Encoding.PEM
        return {
            "version": STATE_VERSION, "holder": self.holder,
            "fascn": self.chuid.fascn.hex(), "guid": self.chuid.guid.hex(),
            "expiry": self.chuid.expiry, "pin": self.pin,
            "pin_tries_max": self.pin_tries_max, "pin_tries_left": self.pin_tries_left,
            "keys": {slot.label: key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()).decode()
                     for slot, key in self.keys.items()},
            "certificates": {slot.label: base64.b64encode(der).decode()
                             for slot, der in self.certificates.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VirtualCardState:
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unknown state version {data.get('version')!r}")
        keys = {Slot(int(label, 16)): _load_private_key(pem)
                for label, pem in data["keys"].items()}
        certificates = {Slot(int(label, 16)): base64.b64decode(der)
                        for label, der in data["certificates"].items()}
        chuid = Chuid(bytes.fromhex(data["fascn"]), bytes.fromhex(data["guid"]), data["expiry"])
        return cls(chuid, data["pin"], int(data["pin_tries_max"]), int(data["pin_tries_left"]),
                   data["holder"], keys, certificates)

    def save(self, path: Path) -> None:
        """Write the state atomically, readable by its owner only."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(self.to_json(), handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> VirtualCardState:
        """Read a saved card; a damaged file is an error, never silently replaced."""
        try:
            return cls.from_json(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise VirtualCardError(action=f"load {path}", detail=f"{exc}; fix or remove the "
                                   "file to create a new card") from exc

    @classmethod
    def load_or_create(cls, path: Path, **generate: Any) -> VirtualCardState:
        """The card saved in ``path``, or a new one saved there."""
        if Path(path).exists():
            return cls.load(path)
        state = cls.generate(**generate)
        state.save(path)
        return state
