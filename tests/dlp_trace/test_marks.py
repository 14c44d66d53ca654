"""Marking an export: the data means the same, every mark is there, canaries fit in."""

from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy import func, select

from appliance.kernel.errors import Sealed
from appliance.keys import state
from appliance.keys.blind import fold, normalise_phone
from crm.access import Entity
from crm.models import Account, Contact
from dlp import watermark
from dlp.canaries import canonical, count_for, sorted_column, website_host
from dlp.models import CanaryKey, CanaryRow, ExportMark, MarkedRecord
from tests.dlp_trace.conftest import export


def _ascii(name: str) -> str:
    return "".join(c for c in fold(name) if c.isascii() and c.isalnum())


def _channels(header):
    return [watermark.channel_for(canonical(h)) for h in header]


def test_marked_rows_hold_the_same_data(book, db):
    done = export(db, book.users["mark"])
    assert len(done.marked) == len(done.rows) + len(done.mark.canaries)
    channels = _channels(done.header)
    by_id = {r[0]: r for r in done.rows}
    changed = 0
    for row in done.real_rows():
        original = by_id[row[0]]
        for channel, before, after in zip(channels, original, row, strict=True):
            if channel is None:
                assert after == before
            else:
                assert channel.normal(after) == channel.normal(before)
                changed += after != before
    assert changed > len(done.rows)  # about half of all markable cells change


def test_every_markable_cell_carries_its_export_bit(book, db):
    done = export(db, book.users["mark"])
    channels = _channels(done.header)
    tested = agree = 0
    for row in done.marked:
        for channel, cell in zip(channels, row, strict=True):
            if channel is not None and cell and channel.applies(cell):
                tested += 1
                agree += watermark.bit_of(done.mark.key, channel, channel.normal(cell))[0] == \
                    channel.read(cell)
    assert tested > 4 * len(done.marked)
    assert agree >= 0.99 * tested  # only digits no spacing can mark are left as they were


def test_two_exports_of_the_same_list_are_marked_independently(book, db):
    first, second = export(db, book.users["mark"]), export(db, book.users["nina"])
    assert first.rows == second.rows
    differ = sum(a != b for ra, rb in zip(first.real_rows(), second.real_rows(), strict=True)
                 for a, b in zip(ra, rb, strict=True))
    cells = sum(len(r) for r in first.rows)
    assert 0.05 * cells < differ < 0.5 * cells
    assert {c.id for c in first.mark.canaries}.isdisjoint(c.id for c in second.mark.canaries)


def test_canaries_per_export_are_believable_and_exist_in_no_book(book, db):
    done = export(db, book.users["mark"])
    assert len(done.mark.canaries) == count_for(400) == 4
    names = {fold(a.name) for a in book.accounts}
    header = done.header
    col = {name: header.index(name) for name in header}
    shapes = {re.sub(r"\d", "9", r[col["phone"]]) for r in done.rows}
    for row in done.canary_rows():
        assert uuid.UUID(row[col["id"]]).version == 4
        assert db.get(Account, uuid.UUID(row[col["id"]])) is None
        assert fold(row[col["name"]].replace("\xa0", " ")) not in names
        assert re.fullmatch(r"[a-zA-Z][a-z0-9.\-]*@[a-z0-9\-]+\.example", row[col["email"]])
        assert re.sub(r"\d", "9", row[col["phone"]].replace(" ", "")) in \
            {s.replace(" ", "") for s in shapes}  # spaced like the real numbers
        assert row[col["city"]] and row[col["address"]]
        assert row[col["status"]] in ("customer", "prospect", "partner")
        assert row[col["owner_id"]] in {str(u.id) for u in book.users.values()}


def test_canaries_sit_where_they_sort_in_a_sorted_list(book, db):
    for sort, column in (("name", "name"), ("city", "city"), ("-name", "name")):
        done = export(db, book.users["mark"], sort=sort)
        found = sorted_column(done.header, done.rows)
        assert found is not None and found[0] == done.header.index(column), sort
        at, key, descending = found
        keys = [key(r[at]) for r in done.marked]
        assert keys == sorted(keys, reverse=descending), sort


def test_unsorted_lists_get_canaries_at_keyed_places(book, db):
    done = export(db, book.users["mark"], sort="-updated")  # a column the file does not hold
    assert sorted_column(done.header, done.rows) is None
    places = sorted(c.position for c in done.mark.canaries)
    assert places != list(range(places[0], places[0] + len(places)))  # not bunched up


def test_small_exports_carry_no_canaries_but_still_their_marks(book, db):
    done = export(db, book.users["alice"], sort="name")
    assert done.mark.canaries  # 200 rows
    small = watermark.plan(db, export_id=uuid.uuid4(), user=book.users["bob"], entity="account",
                           rows=5)
    rows = done.rows[:5]
    marked = watermark.apply(small, done.header, rows)
    assert len(marked) == 5 and marked != rows
    with pytest.raises(ValueError, match="already been applied"):
        watermark.apply(small, done.header, rows)


def test_contacts_get_person_canaries(book, db):
    done = export(db, book.users["mark"], Entity.CONTACT)
    assert len(done.rows) == 120 and len(done.mark.canaries) == 1
    row = done.canary_rows()[0]
    col = {name: done.header.index(name) for name in done.header}
    first, last = (watermark.plain(row[col[f]]) for f in ("first_name", "last_name"))
    local = row[col["email"]].lower().partition("@")[0]
    assert local == f"{_ascii(first)}.{_ascii(last)}"
    assert not db.scalar(select(func.count()).select_from(Contact).where(
        Contact.first_name == first, Contact.last_name == last))
    assert watermark.plain(row[col["title"]]) in ("Head of Purchasing", "CEO", "Office Manager")


def test_record_keeps_ids_and_canary_fingerprints_but_no_values(book, db):
    done = export(db, book.users["mark"])
    stored = db.get(ExportMark, done.mark.id)
    assert stored.rows == 400 and stored.canaries == 4 and stored.username == "mark"
    held = set(db.scalars(select(MarkedRecord.record_id).where(MarkedRecord.mark_id == stored.id)))
    assert held == set(done.ids)
    canaries = db.scalars(select(CanaryRow).where(CanaryRow.mark_id == stored.id)).all()
    assert {c.position for c in canaries} == {c.position for c in done.mark.canaries}
    fingerprints = db.scalars(select(CanaryKey.fingerprint)).all()
    assert len(fingerprints) >= 4 * 4
    values = [v for c in done.mark.canaries for _k, v in c.keys]
    assert not any(v.encode() in fp for fp in fingerprints for v in values)


def test_a_canary_value_that_is_a_real_clients_is_not_kept_as_evidence(book, db):
    mark = watermark.plan(db, export_id=uuid.uuid4(), user=book.users["mark"], entity="account",
                          rows=1)
    done = export(db, book.users["mark"])
    watermark.apply(mark, done.header, done.rows[:30])
    real = book.accounts[0]
    mark.canaries = mark.canaries[:1]
    mark.canaries[0].keys = [("email", real.email), ("website", website_host(real.website)),
                             ("phone", normalise_phone(real.phone)), ("name", fold(real.name)),
                             ("name", "nobody like this")]
    watermark.record(db, mark, [])
    kinds = db.scalars(select(CanaryKey.kind).where(CanaryKey.canary_id == mark.canaries[0].id)).all()
    assert kinds == ["name"]


def test_marks_need_the_keys(book, db, monkeypatch):
    monkeypatch.setattr(state, "_keyring", None)
    with pytest.raises(Sealed):
        watermark.plan(db, export_id=None, user=book.users["mark"], entity="account", rows=3)


def test_plain_undoes_the_invisible_marks():
    assert watermark.plain("Kessler\xa0GmbH") == "Kessler GmbH"
    mark_text = "ref. 7KQ2-M9XD" + watermark.ZW_EDGE + watermark.ZW_ONE * 40 + watermark.ZW_EDGE
    assert watermark.plain(mark_text) == "ref. 7KQ2-M9XD"
