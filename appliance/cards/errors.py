"""Smart-card errors a person can act on.

Each docstring is the message; ``http_status`` is what the card agent and the
web login answer. Nothing here ever carries a PIN.
"""

from __future__ import annotations

from appliance.kernel.errors import CitadelError


class CardError(CitadelError):
    """Smart-card problem: {detail}"""

    http_status = 503
    code = "card"


class PcscUnavailable(CardError):
    """The smart-card service is not running ({detail}): start pcscd and retry."""

    code = "pcsc_unavailable"


class ReaderNotFound(CardError):
    """No card reader named {reader!r} (connected: {readers}): check the reader name."""

    http_status = 404
    code = "reader_not_found"


class CardAbsent(CardError):
    """No smart card in {where}: insert your card and try again."""

    http_status = 409
    code = "card_absent"


class CardRemoved(CardError):
    """The card was removed during the operation: insert it again and retry."""

    http_status = 409
    code = "card_removed"


class NotPivCard(CardError):
    """The card in {reader} has no PIV application: use a PIV card such as a YubiKey."""

    http_status = 422
    code = "not_piv"


class BadPinFormat(CardError):
    """A PIV PIN is 6 to 8 characters: check what you typed."""

    http_status = 400
    code = "bad_pin_format"


class WrongPin(CardError):
    """Wrong PIN: {tries_left} tries left before the card locks."""

    http_status = 401
    code = "wrong_pin"

    def __init__(self, tries_left: int) -> None:
        self.tries_left = tries_left
        super().__init__(tries_left=tries_left)


class PinBlocked(CardError):
    """The card's PIN is blocked: unblock it with the PUK, or ask IT to reset the card."""

    http_status = 423
    code = "pin_blocked"


class PinRequired(CardError):
    """The card needs its PIN before it will {action}: verify the PIN first."""

    http_status = 401
    code = "pin_required"


class SlotEmpty(CardError):
    """The card has no {what} in slot {slot}: set it up as docs/smart-cards.md shows."""

    http_status = 422
    code = "slot_empty"


class UnsupportedAlgorithm(CardError):
    """Slot {slot} holds an unsupported key ({detail}): use ECC P-256 (or RSA-2048 in 9A)."""

    http_status = 422
    code = "unsupported_algorithm"


class MalformedResponse(CardError):
    """The card sent a malformed answer ({detail}): remove it, reinsert it and retry."""

    http_status = 502
    code = "malformed_response"


class CardCommandFailed(CardError):
    """The card refused {command} (status {sw}): remove it, reinsert it and retry."""

    http_status = 502
    code = "card_refused"


class WrongCard(CardError):
    """This secret is sealed to another card (key {fingerprint}): insert that card."""

    http_status = 409
    code = "wrong_card"


class SealedDataInvalid(CardError):
    """The sealed secret is damaged or not sealed to this card's key: {detail}."""

    http_status = 422
    code = "sealed_invalid"


class VirtualCardError(CardError):
    """The virtual card cannot {action}: {detail}"""

    code = "virtual_card"


class StackUnavailable(CardError):
    """Cannot run the private smart-card stack: {detail}"""

    exit_code = 2
    code = "stack_unavailable"
