"""Canonical bytes: the fast encoder used by append and verify equals the reference."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from audit.chain import canonical_bytes, canonical_json, canonical_row, format_ts, parse_ts

text = st.one_of(st.none(), st.text(st.characters(blacklist_categories=("Cs",)), max_size=20))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(blacklist_categories=("Cs",)), max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(seq=st.integers(min_value=0, max_value=2**62), ts=st.datetimes(timezones=st.just(UTC)),
       user=text, action=st.text(min_size=1, max_size=32), entity=text, entity_id=text,
       count=st.integers(min_value=-2**31, max_value=2**31 - 1), ip=text,
       meta=st.dictionaries(st.text(max_size=8), json_values, max_size=4))
def test_fast_encoder_equals_reference(seq, ts, user, action, entity, entity_id, count, ip, meta):
    meta_text = canonical_json(meta)
    fast = canonical_row(seq, ts, user, action, entity, entity_id, count, ip, meta_text)
    reference = canonical_bytes({"seq": seq, "ts": ts, "user": user, "action": action,
                                 "entity": entity, "entity_id": entity_id, "count": count,
                                 "ip": ip, "meta": meta_text})
    assert fast == reference
    assert json.loads(fast)["meta"] == json.loads(meta_text)


def test_timestamps_are_utc_with_microseconds():
    paris = timezone(timedelta(hours=1))
    assert format_ts(datetime(2026, 3, 2, 10, 14, 3, tzinfo=paris)) == "2026-03-02T09:14:03.000000Z"
    assert format_ts(datetime(2026, 3, 2, 9, 14, 3, 5)) == "2026-03-02T09:14:03.000005Z"
    assert parse_ts("2026-03-02T09:14:03.000005Z") == datetime(2026, 3, 2, 9, 14, 3, 5, tzinfo=UTC)


def test_layout_is_sorted_compact_utf8():
    row = canonical_row(7, datetime(2026, 3, 2, 9, 14, 3, tzinfo=UTC), "zoé", "export", "account",
                        None, 412, "10.0.0.5", '{"format":"csv"}')
    assert row == ('{"action":"export","count":412,"entity":"account","entity_id":null,'
                   '"ip":"10.0.0.5","meta":{"format":"csv"},"seq":7,'
                   '"ts":"2026-03-02T09:14:03.000000Z","user":"zoé"}').encode()
