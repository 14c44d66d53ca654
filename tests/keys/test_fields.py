"""Encrypted fields: bound to table, column, row and key version; decrypted lazily; searchable
by blind index; unusable while sealed."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from sqlalchemy import insert, select, text, update
from sqlalchemy.orm import Session

from appliance.kernel.errors import Sealed
from appliance.keys import decrypt_value, encrypt_value, encrypted_row, fields, sealing, state
from appliance.keys.errors import DecryptionFailed, UnknownKeyVersion
from tests.keys.models import Client, Contact


def stored(engine, table: str, column: str, row_id) -> bytes:
    with engine.connect() as conn:
        return conn.execute(select(Client.__table__.metadata.tables[table].c[column])
                            .where(Client.__table__.metadata.tables[table].c.id == row_id)
                            ).scalar_one()


def test_values_round_trip_through_the_database(keyring, tables):
    with Session(tables) as session:
        client = Client(name="Acme", email="Ops@Acme.example", phone="+49 30 1234",
                        tax_id="DE 123.456.789", notes="ünïcode notes ✓", amount=Decimal("12.50"))
        session.add(client)
        session.commit()
        client_id = client.id
    with Session(tables) as session:
        client = session.get(Client, client_id)
        assert (client.email, client.phone, client.tax_id) == ("Ops@Acme.example", "+49 30 1234",
                                                                "DE 123.456.789")
        assert client.notes == "ünïcode notes ✓"
        assert client.amount == Decimal("12.50")
    raw = stored(tables, "keytest_clients", "email", client_id)
    assert b"Acme" not in raw and b"acme" not in raw.lower()
    assert raw[0] == fields.FORMAT and fields.stored_version(raw) == 1


def test_unset_and_none_read_as_the_default(keyring, tables):
    with Session(tables) as session:
        client = Client(name="Blank")
        session.add(client)
        session.commit()
        assert client.email == "" and client.amount == Decimal("0")
        client.email = "x@y.z"
        client.email = None
        session.commit()
        assert client.email == "" and client.email_encrypted is None and client.email_index is None


def test_the_id_assigned_after_the_fields_is_still_bound(keyring, tables):
    client = Client(email="late@id.example")  # Record.__init__ sets id after email
    assert client.email == "late@id.example"
    client_id = client.id
    with Session(tables) as session:
        session.add(client)
        session.commit()
    assert decrypt_value("keytest_clients", "email", client_id,
                         stored(tables, "keytest_clients", "email", client_id)) == "late@id.example"


def test_a_row_without_an_id_cannot_be_stored(keyring, tables):
    contact = Contact(email="no-id@example", id=None)
    with Session(tables) as session:
        session.add(contact)
        with pytest.raises(ValueError, match="needs its `id`"):
            session.flush()


def test_reading_decrypts_only_what_is_read(keyring, tables, monkeypatch):
    with Session(tables) as session:
        session.add_all(Client(name=f"c{i}", email=f"c{i}@x.example", phone=f"+1 555 {i:04}",
                               notes="long " * 50) for i in range(60))
        session.commit()
    calls = []
    real = fields.decrypt_bytes
    monkeypatch.setattr(fields, "decrypt_bytes",
                        lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    with Session(tables) as session:
        page = session.scalars(select(Client).order_by(Client.name).limit(50)).all()
        assert calls == []
        names_and_emails = [(c.name, c.email) for c in page]
        assert len(names_and_emails) == 50
        assert calls == ["email"] * 50
        [c.email for c in page]  # cached: no second decryption
        assert len(calls) == 50


def test_the_cache_follows_changes_made_elsewhere(keyring, tables):
    with Session(tables) as session:
        client = Client(email="first@x.example")
        session.add(client)
        session.commit()
        assert client.email == "first@x.example"
        new = encrypt_value("keytest_clients", "email", client.id, "second@x.example")
        session.execute(update(Client).where(Client.id == client.id).values(email_encrypted=new))
        session.commit()
        session.refresh(client)
        assert client.email == "second@x.example"


def _two_clients(tables):
    with Session(tables) as session:
        a = Client(email="a@x.example", phone="+1 111")
        b = Client(email="b@x.example", phone="+1 222")
        session.add_all([a, b])
        session.commit()
        return a.id, b.id


def test_a_value_copied_to_another_row_does_not_decrypt(keyring, tables):
    a, b = _two_clients(tables)
    a_email = stored(tables, "keytest_clients", "email", a)
    with tables.begin() as conn:
        conn.execute(update(Client.__table__).where(Client.__table__.c.id == b)
                     .values(email=a_email))
    with Session(tables) as session, pytest.raises(DecryptionFailed):
        _ = session.get(Client, b).email


def test_a_value_copied_to_another_column_does_not_decrypt(keyring, tables):
    a, _b = _two_clients(tables)
    a_email = stored(tables, "keytest_clients", "email", a)
    with tables.begin() as conn:
        conn.execute(update(Client.__table__).where(Client.__table__.c.id == a)
                     .values(phone=a_email))
    with Session(tables) as session, pytest.raises(DecryptionFailed):
        _ = session.get(Client, a).phone


def test_a_value_copied_to_another_table_does_not_decrypt(keyring):
    row = uuid.uuid4()
    blob = encrypt_value("keytest_clients", "email", row, "x@y.example")
    with pytest.raises(DecryptionFailed):
        decrypt_value("keytest_contacts", "email", row, blob)


def test_every_flipped_bit_and_every_truncation_is_detected(keyring):
    row = uuid.uuid4()
    blob = encrypt_value("keytest_clients", "notes", row, "a secret note of some length")
    assert decrypt_value("keytest_clients", "notes", row, blob) == "a secret note of some length"
    for position in range(len(blob)):
        for bit in range(8):
            altered = bytearray(blob)
            altered[position] ^= 1 << bit
            with pytest.raises(DecryptionFailed):
                decrypt_value("keytest_clients", "notes", row, bytes(altered))
    for length in range(len(blob)):
        with pytest.raises(DecryptionFailed):
            decrypt_value("keytest_clients", "notes", row, blob[:length])
    with pytest.raises(DecryptionFailed):
        decrypt_value("keytest_clients", "notes", row, blob + b"\x00")


def test_relabelling_the_key_version_is_detected(keyring):
    keyring.add_version("fields")
    row = uuid.uuid4()
    blob = bytearray(encrypt_value("keytest_clients", "email", row, "v2@x.example"))
    assert fields.stored_version(bytes(blob)) == 2
    blob[4] = 1  # claim version 1
    with pytest.raises(DecryptionFailed):
        decrypt_value("keytest_clients", "email", row, bytes(blob))
    blob[4] = 9  # a version that does not exist
    with pytest.raises(UnknownKeyVersion):
        decrypt_value("keytest_clients", "email", row, bytes(blob))


def test_another_appliances_key_cannot_decrypt(keyring, tmp_path):
    from tests.keys.conftest import make_appliance

    row = uuid.uuid4()
    blob = encrypt_value("keytest_clients", "email", row, "mine@x.example")
    other = make_appliance(tmp_path / "other")
    try:
        other_keyring = sealing.unseal_with_recovery(other.data_dir, other.init.recovery_key)
        with pytest.raises(DecryptionFailed):
            decrypt_value("keytest_clients", "email", row, blob, keyring=other_keyring)
    finally:
        sealing.seal_now(other.data_dir)


def test_uuid_spellings_bind_the_same_row(keyring):
    row = uuid.uuid4()
    blob = encrypt_value("keytest_clients", "email", row, "u@x.example")
    for spelling in (row, str(row), row.hex, str(row).upper()):
        assert decrypt_value("keytest_clients", "email", spelling, blob) == "u@x.example"


def test_padding_hides_exact_lengths(keyring):
    row = uuid.uuid4()
    lengths = {len(encrypt_value("keytest_clients", "email", row, "x" * n)) for n in range(16)}
    assert lengths == {fields.OVERHEAD + 16}


def test_sealed_means_no_reading_and_no_writing(box, keyring, tables):
    with Session(tables) as session:
        client = Client(email="s@x.example")
        session.add(client)
        session.commit()
        client_id = client.id
    sealing.seal_now(box.data_dir)
    with Session(tables) as session:
        client = session.get(Client, client_id)
        with pytest.raises(Sealed):
            _ = client.email
        with pytest.raises(Sealed):
            client.email = "new@x.example"
        with pytest.raises(Sealed):
            encrypt_value("keytest_clients", "email", client_id, "x")
        with pytest.raises(Sealed):
            select(Client).where(Client.email.matches("s@x.example"))


def test_blind_index_search_normalises_like_people_type(keyring, tables):
    with Session(tables) as session:
        session.add_all([
            Client(name="one", email="Sales@Example.COM", phone="+49 (30) 123-45",
                   tax_id="de 123.456.789"),
            Client(name="two", email="other@example.com", phone="0049 30 99999", tax_id="FR999"),
        ])
        session.commit()
    with Session(tables) as session:
        def names(condition):
            return session.scalars(select(Client.name).where(condition)).all()

        assert names(Client.email.matches("  sales@example.com ")) == ["one"]
        assert names(Client.phone.matches("0049 30 12345")) == ["one"]
        assert names(Client.phone.matches("+493099999")) == ["two"]
        assert names(Client.tax_id.matches("DE123456789")) == ["one"]
        assert names(Client.email.matches("nobody@example.com")) == []
        assert names(Client.email.matches("   ")) == []
    with pytest.raises(TypeError, match="no blind index"):
        Client.notes.matches("x")


def test_equal_values_in_different_columns_have_unrelated_indexes(keyring, tables):
    with Session(tables) as session:
        client = Client(email="same@x.example")
        contact = Contact(email="same@x.example")
        session.add_all([client, contact])
        session.commit()
        assert client.email_index != contact.email_index


def test_bulk_inserts_read_back_through_the_model(keyring, tables):
    row_id = uuid.uuid4()
    values = encrypted_row(Client, row_id, email="Bulk@X.example", amount=Decimal("7.10"),
                           notes=None)
    assert set(values) == {"email", "email_bidx", "amount", "notes"}
    with tables.begin() as conn:
        conn.execute(insert(Client.__table__).values(id=row_id, name="bulk", **values))
    with Session(tables) as session:
        client = session.scalars(select(Client).where(Client.email.matches("bulk@x.example"))).one()
        assert client.id == row_id
        assert client.amount == Decimal("7.10") and client.notes == ""
    with pytest.raises(KeyError):
        encrypted_row(Client, row_id, name="not encrypted")


def test_the_database_holds_no_plaintext(keyring, tables):
    with Session(tables) as session:
        session.add(Client(name="visible", email="hidden.person@secret.example",
                           tax_id="HIDDEN999", notes="confidential plans"))
        session.commit()
    with tables.connect() as conn:
        row = conn.execute(text("SELECT * FROM keytest_clients")).one()
    dump = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in row)
    for secret in (b"hidden.person", b"HIDDEN999", b"confidential"):
        assert secret not in dump
    assert b"visible" in dump


def test_wrong_kinds_are_refused(keyring):
    client = Client()
    with pytest.raises(TypeError):
        client.email = 42
    with pytest.raises(ValueError):
        client.amount = "twelve"
    client.amount = 12
    assert client.amount == Decimal("12")


def test_state_without_keyring_is_sealed():
    state.clear()
    assert state.is_sealed() and not state.in_demo_mode()


def test_comparing_an_encrypted_column_in_sql_is_refused_loudly(keyring):
    with pytest.raises(TypeError, match=r"Client.email.matches\(term\)"):
        select(Client).where(Client.email == "x@y.example")
    assert Client.email == Client.email and Client.email != Client.phone


def test_matching_any_of_several_values(keyring, tables):
    with Session(tables) as session:
        session.add_all([Client(name="a", tax_id="DE1"), Client(name="b", tax_id="FR2"),
                         Client(name="c", tax_id="IT3")])
        session.commit()
        query = select(Client.name).where(Client.tax_id.matches_any(["de-1", "fr 2", "ES4"]))
        assert sorted(session.scalars(query)) == ["a", "b"]
        assert session.scalars(select(Client).where(Client.tax_id.matches_any([]))).all() == []
        found = session.scalars(select(Client.tax_id_index)).all()
        assert set(Client.tax_id.terms("it 3")) & set(found)
