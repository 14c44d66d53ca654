"""The keyring file: wrapped, versioned, checked; a wrong master key or an edit is detected."""

from __future__ import annotations

import json
import os

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from appliance.keys import files, read_public_keys
from appliance.keys.errors import (
    DecryptionFailed,
    KeyringTampered,
    KeysNotInitialised,
    UnknownKeyVersion,
    UnknownPurpose,
    WrongMasterKey,
)
from appliance.keys.keyring import PURPOSES, Keyring
from appliance.keys.primitives import b64e


def test_every_purpose_has_a_distinct_random_key(keyring):
    keys = {p: keyring.data_key(p) for p in PURPOSES}
    assert all(k.version == 1 and len(k.key) == 32 for k in keys.values())
    assert len({k.key for k in keys.values()}) == len(PURPOSES)
    assert "key=" not in repr(keys["fields"]) and keys["fields"].key.hex() not in repr(keys)


def test_a_wrong_master_key_is_told_apart_from_a_damaged_file(box, keyring):
    with pytest.raises(WrongMasterKey):
        Keyring.open(box.data_dir, os.urandom(32))
    path = files.keyring_path(box.data_dir)
    document = json.loads(path.read_text())
    document["purposes"]["fields"]["current"] = 7
    path.write_text(json.dumps(document))
    with pytest.raises(KeyringTampered, match="integrity"):
        Keyring.open(box.data_dir, keyring._master)


def test_a_rolled_back_keyring_file_is_detected(box, keyring):
    path = files.keyring_path(box.data_dir)
    document = json.loads(path.read_text())
    keyring.add_version("fields")
    newer = json.loads(path.read_text())
    newer["purposes"]["fields"] = document["purposes"]["fields"]  # splice the old entry in
    path.write_text(json.dumps(newer))
    with pytest.raises(KeyringTampered):
        Keyring.open(box.data_dir, keyring._master)


def test_a_wrapped_key_moved_to_another_purpose_does_not_unwrap(box, keyring):
    path = files.keyring_path(box.data_dir)
    document = json.loads(path.read_text())
    fields_wrapped = document["purposes"]["fields"]["versions"]["1"]["wrapped"]
    document["purposes"]["attachments"]["versions"]["1"]["wrapped"] = fields_wrapped
    forged = Keyring(box.data_dir, keyring._master, document)  # skip the file MAC on purpose
    with pytest.raises(DecryptionFailed):
        forged.data_key("attachments")


def test_new_versions_are_current_and_old_ones_stay(keyring):
    first = keyring.data_key("fields")
    assert keyring.add_version("fields") == 2
    assert keyring.current_version("fields") == 2
    assert keyring.data_key("fields", 1) == first
    assert keyring.data_key("fields").key != first.key
    reopened = Keyring.open(keyring.data_dir, keyring._master)
    assert reopened.versions("fields") == [1, 2]
    assert reopened.data_key("fields", 2) == keyring.data_key("fields", 2)
    with pytest.raises(UnknownKeyVersion):
        keyring.data_key("fields", 3)


def test_unknown_purposes_are_refused(keyring):
    with pytest.raises(UnknownPurpose):
        keyring.data_key("passwords")


def test_signing_keys_sign_and_their_public_halves_are_readable_sealed(box, keyring):
    signer = keyring.audit_signing_key()
    signature = signer.private_key.sign(b"checkpoint")
    public = read_public_keys(box.data_dir, "audit_signing")[1]
    public.verify(signature, b"checkpoint")
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert raw == signer.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    backup = keyring.backup_keys()
    backup.verify_key.verify(backup.signing_key.sign(b"manifest"), b"manifest")
    assert backup.data_key == keyring.data_key("backups").key
    assert raw != backup.verify_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    with pytest.raises(UnknownPurpose):
        read_public_keys(box.data_dir, "fields")


def test_a_missing_keyring_says_to_initialise(tmp_path):
    with pytest.raises(KeysNotInitialised, match="appliance init"):
        Keyring.open(tmp_path, os.urandom(32))


def test_the_keyring_file_holds_no_key_in_the_clear(box, keyring):
    text = files.keyring_path(box.data_dir).read_text()
    for purpose in PURPOSES:
        key = keyring.data_key(purpose).key
        assert key.hex() not in text
        assert b64e(key) not in text
