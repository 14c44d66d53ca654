"""The audit trail's signing key from the appliance's key hierarchy.

With ``[audit] signer = "keyring"`` (what ``appliance init`` writes), checkpoints
are signed with the ``audit_signing`` data key: it exists only while the box is
unsealed, so someone with the disk alone cannot sign a rewritten history. Its
public keys (every version) stay readable while sealed, so ``appliance audit
verify`` needs no unsealing.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance import keys
from audit.config import AuditConfig
from audit.signing import Ed25519Signer, key_id_of


class KeyringProvider:
    """Signs with the keyring's ``audit_signing`` key; its public keys stay readable while sealed."""

    def __init__(self, config: AuditConfig) -> None:
        self.config = config

    def signer(self) -> Ed25519Signer:
        keys.sync(self.config.data_dir)
        return Ed25519Signer(keys.current().audit_signing_key().private_key)  # Sealed while sealed

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        found = keys.read_public_keys(self.config.data_dir, "audit_signing")
        return {key_id_of(key): key for key in found.values()}

