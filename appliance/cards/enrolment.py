"""Read what the appliance stores when it enrols a card.

``read_card_for_enrolment`` returns the card's identifier and, for slot 9A
(login) and slot 9D (sealing key shares, officers' cards), the certificate,
public key, algorithm and key fingerprint. Given the PIN, it also proves the
card holds the private keys (signs a random message with 9A, opens a secret
sealed to 9D), so a copied certificate cannot be enrolled.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from appliance.cards import spec
from appliance.cards.challenge import SignatureInvalid, verify_signature
from appliance.cards.errors import CardError, SlotEmpty, UnsupportedAlgorithm
from appliance.cards.piv import PivSession
from appliance.cards.seal import open_with_card, seal_to_card
from appliance.cards.spec import Algorithm, Slot


@dataclass(frozen=True)
class SlotKey:
    """One key slot of a card as the appliance records it."""

    slot: Slot
    algorithm: Algorithm
    certificate: x509.Certificate
    fingerprint: str

    @classmethod
    def from_certificate(cls, slot: Slot, certificate: x509.Certificate) -> SlotKey:
        public_key = certificate.public_key()
        algorithm = spec.algorithm_of(public_key, slot)
        return cls(slot, algorithm, certificate, spec.key_fingerprint(public_key))

    @property
    def public_key(self) -> spec.PublicKey:
        key = self.certificate.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)  # from_certificate
        return key

    @property
    def can_seal(self) -> bool:
        """Whether secrets can be sealed to this key (9D with ECC P-256)."""
        return self.slot is Slot.KEY_MANAGEMENT and self.algorithm is Algorithm.ECC_P256

    def to_json(self) -> dict[str, Any]:
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        pem = self.public_key.public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
        return {"slot": self.slot.label, "algorithm": self.algorithm.label,
                "fingerprint": self.fingerprint,
                "subject": self.certificate.subject.rfc4514_string(),
                "certificate": base64.b64encode(der).decode(), "public_key_pem": pem.decode()}


@dataclass(frozen=True)
class CardEnrolment:
    """A card's identity and keys; ``proven`` when the card showed it holds the keys."""

    card_id: str
    guid: str | None
    serial: int | None
    reader: str
    authentication: SlotKey
    key_management: SlotKey | None
    proven: bool

    def to_json(self) -> dict[str, Any]:
        return {"card_id": self.card_id, "guid": self.guid, "serial": self.serial,
                "reader": self.reader, "proven": self.proven,
                "authentication": self.authentication.to_json(),
                "key_management": self.key_management.to_json() if self.key_management else None}


def _optional_slot(piv: PivSession, slot: Slot) -> SlotKey | None:
    try:
        return SlotKey.from_certificate(slot, piv.read_certificate(slot))
    except (SlotEmpty, UnsupportedAlgorithm):
        return None


def _prove(piv: PivSession, auth: SlotKey, key_management: SlotKey | None) -> None:
    message = b"citadel enrolment proof\x00" + secrets.token_bytes(32)
    try:
        verify_signature(auth.public_key, piv.sign(message, Slot.AUTHENTICATION,
                                                   auth.public_key), message)
    except SignatureInvalid as exc:
        raise CardError(detail="the card's 9A key does not match its certificate; "
                               "regenerate the certificate") from exc
    if key_management is not None and key_management.can_seal:
        secret = secrets.token_bytes(32)
        if open_with_card(piv, seal_to_card(key_management.public_key, secret)) != secret:
            raise CardError(detail="the card's 9D key does not match its certificate")


def describe_card(piv: PivSession, pin: str | None = None) -> CardEnrolment:
    """Identity and keys of the card in ``piv``; with ``pin``, prove possession too."""
    identity = piv.identity()
    auth = SlotKey.from_certificate(Slot.AUTHENTICATION, piv.read_certificate(Slot.AUTHENTICATION))
    key_management = _optional_slot(piv, Slot.KEY_MANAGEMENT)
    if pin is not None:
        piv.verify_pin(pin)
        _prove(piv, auth, key_management)
    return CardEnrolment(identity.card_id, identity.guid, identity.serial, piv.reader,
                         auth, key_management, proven=pin is not None)


def read_card_for_enrolment(reader: str | None = None, pin: str | None = None) -> CardEnrolment:
    """Open the card in ``reader`` (or the first reader with a card) and describe it."""
    with PivSession.open(reader) as piv:
        return describe_card(piv, pin)
