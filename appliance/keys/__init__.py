"""Encrypted storage and the sealed key hierarchy.

A 256-bit master key, never stored in the clear, wraps one versioned data
key per purpose (``fields``, ``blind_index``, ``attachments``, ``backups``,
``audit_signing``). The appliance starts sealed: M of N share holders, or
the printed recovery key, rebuild the master key, which then lives in the
kernel user keyring until someone seals or the box reboots.
docs/encryption.md gives the guarantees and every byte format.

What the rest of Citadel calls:

- process start: ``start(settings)``; before each request: ``sync(data_dir)``;
  ``is_sealed()``, ``in_demo_mode()``, ``current()`` (a ``Keyring``; raises ``Sealed``)
- models: ``encrypted_field(index=...)``; bulk paths: ``encrypt_value``,
  ``decrypt_value``, ``encrypted_row``; search: ``blind_terms`` or ``Model.field.matches(term)``
- attachments: ``write_encrypted``, ``open_decrypted``
- backups: ``current().backup_keys()``; audit: ``current().audit_signing_key()``;
  verification while sealed: ``read_public_keys(data_dir, purpose)``
- ``init_keys`` (by ``appliance init``), ``auto_unseal_demo`` (by the demo)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from appliance.keys.attachments import (
    AttachmentInfo,
    open_decrypted,
    read_decrypted,
    register_attachment_source,
    write_encrypted,
)
from appliance.keys.blind import blind_index, blind_terms, name_index_terms, name_search_terms
from appliance.keys.fields import (
    EncryptedField,
    decrypt_value,
    encrypt_value,
    encrypted_field,
    encrypted_row,
)
from appliance.keys.holders import KdfParams, PassphraseHolder, ShareHolder, register_holder_kind
from appliance.keys.keyring import (
    PURPOSES,
    BackupKeys,
    DataKey,
    Keyring,
    SigningKey,
    read_public_keys,
)
from appliance.keys.sealing import (
    DEMO_WARNING,
    KeyInit,
    Unsealer,
    auto_unseal_demo,
    init_keys,
    reshare,
    seal_now,
    status,
    unseal_copy,
    unseal_with_recovery,
)
from appliance.keys.selftest import run_self_test
from appliance.keys.state import current, in_demo_mode, is_sealed, on_key_files_changed, sync


def start(settings: Any) -> Keyring | None:
    """At process start: unseal a demo from its key file, else follow the kernel keyring.

    ``settings`` is an ``appliance.kernel.config.Settings``. Returns the keyring, or
    None while the appliance is sealed (serve a "sealed" page, HTTP 503).
    """
    run_self_test()  # a box whose crypto library fails its known answers must not serve
    data_dir = Path(settings.data_dir)
    if settings.get("demo"):
        return auto_unseal_demo(data_dir)
    return sync(data_dir)


__all__ = [
    "DEMO_WARNING",
    "PURPOSES",
    "AttachmentInfo",
    "BackupKeys",
    "DataKey",
    "EncryptedField",
    "KdfParams",
    "KeyInit",
    "Keyring",
    "PassphraseHolder",
    "ShareHolder",
    "SigningKey",
    "Unsealer",
    "auto_unseal_demo",
    "blind_index",
    "blind_terms",
    "current",
    "decrypt_value",
    "encrypt_value",
    "encrypted_field",
    "encrypted_row",
    "in_demo_mode",
    "init_keys",
    "is_sealed",
    "name_index_terms",
    "name_search_terms",
    "on_key_files_changed",
    "open_decrypted",
    "read_decrypted",
    "read_public_keys",
    "register_attachment_source",
    "register_holder_kind",
    "reshare",
    "run_self_test",
    "seal_now",
    "start",
    "status",
    "sync",
    "unseal_copy",
    "unseal_with_recovery",
    "write_encrypted",
]
