"""Bad input: kept or rejected with a reason, counted, never a crash; numbering kept."""

from __future__ import annotations

from pathlib import Path

import orjson

from dlp.events import (
    ACTION_CODE,
    UNKNOWN_ACTION,
    Vocabulary,
    parse_lines,
    read_events,
    table_from_dicts,
)
from dlp.features import fit_profile, networks, prepare
from dlp.replay import replay


def event(ts: str, user: str = "ann", action: str = "record.view", count: int = 1,
          **extra: object) -> bytes:
    return orjson.dumps({"ts": ts, "user": user, "action": action, "entity": "account",
                         "count": count, "ip": "10.0.0.1", "meta": {}, **extra})


BAD = [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"user": "ann", "action": "login"}', "no time"),
    (b'{"ts": "2026-03-02T09:00:00Z", "action": "login"}', "no user"),
    (b'{"ts": "2026-03-02T09:00:00Z", "user": "ann"}', "no action"),
    (b'{"ts": "yesterday", "user": "ann", "action": "login"}', "bad time"),
    (event("2026-03-02T09:00:00Z", count=-3), "must not be negative"),
    (b'{"ts": "2026-03-02T09:00:00Z", "user": "ann", "action": "export", "count": "12"}',
     "whole number"),
]


def test_every_bad_line_is_rejected_with_its_reason_and_the_rest_kept() -> None:
    good = [event(f"2026-03-02T09:00:{k:02d}Z") for k in range(10)]
    lines = good[:5] + [raw for raw, _why in BAD] + [b"", b"   "] + good[5:]
    table, report = parse_lines(lines, Vocabulary())
    assert len(table) == 10
    assert report.lines == len(lines) and report.blank == 2
    assert sum(report.rejected.values()) == len(BAD)
    for k, (_raw, why) in enumerate(BAD):
        reason = next(r for r in report.rejected if why in r)
        assert 5 + k in report.examples[reason]
    # the kept events keep their own line numbers
    assert table.line.tolist() == [0, 1, 2, 3, 4, *range(5 + len(BAD) + 2, len(lines))]
    assert "rejected" in report.summary()


def test_unknown_actions_are_kept_and_counted() -> None:
    table, report = parse_lines([event("2026-03-02T09:00:00Z", action="record.teleport"),
                                 event("2026-03-02T09:00:01Z")], Vocabulary())
    assert len(table) == 2 and table.action[0] == UNKNOWN_ACTION
    assert report.unknown_actions == {"record.teleport": 1}
    assert "record.teleport" in report.summary()


def test_odd_but_usable_fields_are_kept_and_counted() -> None:
    lines = [
        b'{"ts": "2026-03-02T10:00:00+01:00", "user": "ann", "action": "export", "count": 3.0,'
        b' "ip": 17, "entity": ["x"], "meta": "text"}',
        b'{"ts": "2026-03-02T09:00:01", "user": "ann", "action": "login"}',
    ]
    table, report = parse_lines(lines, Vocabulary())
    assert len(table) == 2
    assert table.ts.tolist() == [1772442000, 1772442001]  # offset and naive (UTC) times
    assert table.count[0] == 3 and table.ip[0] == -1
    assert sum(report.coerced.values()) == 4


def test_fast_and_careful_paths_agree() -> None:
    lines = [event(f"2026-03-02T09:{k // 60:02d}:{k % 60:02d}Z", user=f"u{k % 7}",
                   action=("export", "copy", "record.view")[k % 3], count=k % 5,
                   meta={"ids": [f"a{k}", k], "outside_book": k % 2, "role": "sales"})
             for k in range(300)]
    fast, _ = parse_lines(lines, Vocabulary())
    careful, _ = table_from_dicts([orjson.loads(x) for x in lines], Vocabulary())
    for column in ("line", "ts", "user", "action", "count", "ip", "outside", "id_codes",
                   "id_ptr", "counted"):
        assert getattr(fast, column).tolist() == getattr(careful, column).tolist(), column


def test_repeats_floods_and_late_events_are_kept_but_not_double_counted() -> None:
    copy = event("2026-03-02T09:00:00Z", action="copy")
    lines = [copy, copy]  # an exact repeat in the same second
    lines += [event("2026-03-02T09:00:05Z", action="print", meta={"ids": [f"a{k}"]})
              for k in range(10)]  # ten distinct print beacons in one second
    lines += [event("2026-03-02T08:00:00Z")]  # earlier than the events before it
    vocab = Vocabulary()
    table, report = parse_lines(lines, vocab)
    assert len(table) == len(lines) and report.duplicates == 1
    profile = fit_profile(table, len(vocab.user_names))
    rows = prepare(table, profile, networks(vocab.ip_names))
    assert int(rows.flooded.sum()) == 10 - 3
    assert int(rows.late.sum()) == 1
    assert rows.ts.max() == rows.ts[rows.late][0]  # scored at the person's latest time


def test_replay_survives_a_hostile_file(tmp_path: Path) -> None:
    lines = [event(f"2026-03-{1 + k // 200:02d}T{9 + (k % 200) // 30:02d}:{k % 60:02d}:00Z",
                   user=f"u{k % 5}") for k in range(4000)]
    lines[100:100] = [raw for raw, _why in BAD]
    lines += [event("2026-03-25T10:00:00Z", user="stranger", action="export", count=900)]
    lines += [event("2026-03-25T11:00:00Z", action="copy")] * 500  # a beacon flood
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = replay(path, 1773532800, tmp_path / "alerts.jsonl")  # 2026-03-15
    assert sum(result.report.rejected.values()) == len(BAD)
    assert result.report.duplicates == 499
    assert result.new_people == 2  # "stranger", and "ann" of the flood
    assert "no history" in result.summary()


def test_read_events_numbers_lines_from_zero(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(b"\n" + event("2026-03-02T09:00:00Z") + b"\n")
    table, report = read_events(path, Vocabulary())
    assert table.line.tolist() == [1] and report.blank == 1
    assert ACTION_CODE["record.view"] == table.action[0]


def test_audit_log_rows_are_read_as_they_are_stored() -> None:
    from datetime import UTC, datetime

    row = {"seq": 41, "ts": datetime(2026, 3, 2, 9, 0, tzinfo=UTC), "user": "ann",
           "action": "export", "entity": "account", "entity_id": None, "count": 5,
           "ip": "10.0.0.1", "meta": '{"ids":["x","y"],"outside_book":3}'}
    view = dict(row, seq=42, action="record.view", count=1, entity_id="acc-7", meta="{}")
    table, report = table_from_dicts([row, view], Vocabulary(), lines=[41, 42])
    assert table.line.tolist() == [41, 42] and report.kept == 2
    assert table.outside.tolist() == [3, -1]
    assert table.id_ptr.tolist() == [0, 2, 3]  # two ids from meta, one from entity_id
