"""What can go wrong with keys, sealing and encrypted data, and what to do about it.

Like every Citadel error, each class's docstring is its message template.
"""

from __future__ import annotations

from appliance.kernel.errors import BadRequest, CitadelError, ConfigError, Conflict, ExitCode


class KeysNotInitialised(ConfigError):
    """No keys yet in {data_dir}: the officers create them with `appliance keys init --threshold M
    --card OFFICER ... --share-dir DIR` (a demo gets them from `appliance init --demo`)."""


class KeysAlreadyInitialised(Conflict):
    """{data_dir} already has keys; refusing to overwrite them (that would lose all data)."""


class WrongMasterKey(CitadelError):
    """That master key ({source}) does not open this appliance's keyring: wrong appliance?"""
    code = "wrong_master_key"


class KeyringTampered(CitadelError):
    """{path} was altered outside Citadel ({detail}): restore it from a backup before unsealing."""
    code = "keyring_tampered"


class DecryptionFailed(CitadelError):
    """A {what} could not be decrypted: it was altered, moved or made with another key."""

    code = "decryption_failed"


class UnknownKeyVersion(DecryptionFailed):
    """A {what} names key version {version} of `{purpose}`, which this keyring does not have."""


class UnknownPurpose(BadRequest):
    """`{purpose}` is not a key purpose: use one of {choices}."""


class KernelKeyringUnavailable(ConfigError):
    """No Linux kernel keyring ({detail}): install libkeyutils1 (Citadel needs Linux)."""


class SelfTestFailed(CitadelError):
    """Crypto self-test failed ({detail}): the appliance stays sealed; reinstall its libraries."""

    exit_code = ExitCode.SELF_TEST_FAILED
    code = "self_test_failed"


class BadShareFile(BadRequest):
    """{path} is not a usable share of this appliance: {detail}."""


class WrongPassphrase(CitadelError):
    """That passphrase does not open {holder}'s share (or the share file was altered): try again."""
    code = "wrong_passphrase"


class NotEnoughShares(CitadelError):
    """{have} of the {need} shares needed were given: ask more key holders to unseal."""
    code = "not_enough_shares"


class BadRecoveryKey(BadRequest):
    """That recovery key has a typo ({detail}): type it again as printed."""


class RotationError(CitadelError):
    """Key rotation cannot continue: {detail}"""
    code = "rotation"
