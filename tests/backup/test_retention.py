"""Grandfather-father-son retention as properties, and pruning that never breaks a kept archive."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from backup.archive import ArchiveReader, ArchiveWriter
from backup.repository import STATUS_FAILED, STATUS_VERIFIED, Repository, new_archive_id
from backup.retention import Policy, archive_time, keep, prune

times = st.lists(
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)),
    max_size=80,
    unique=True,
)
policies = st.builds(
    Policy,
    daily=st.integers(0, 10),
    weekly=st.integers(0, 6),
    monthly=st.integers(0, 14),
    yearly=st.integers(0, 3),
)


@given(times, policies)
def test_kept_is_a_subset_holding_the_newest_and_bounded(stamps, policy):
    kept = keep(stamps, policy)
    assert kept <= set(stamps)
    if stamps:
        assert max(stamps) in kept
    assert len(kept) <= 1 + policy.daily + policy.weekly + policy.monthly + policy.yearly


@given(times, policies)
def test_keeping_is_idempotent(stamps, policy):
    kept = keep(stamps, policy)
    assert keep(kept, policy) == kept


@given(times, policies)
def test_newest_of_each_recent_day_is_kept(stamps, policy):
    kept = keep(stamps, policy)
    days = sorted({t.date() for t in stamps}, reverse=True)[: policy.daily]
    for day in days:
        assert max(t for t in stamps if t.date() == day) in kept


@given(times, policies)
def test_newest_of_each_recent_month_is_kept(stamps, policy):
    kept = keep(stamps, policy)
    months = sorted({(t.year, t.month) for t in stamps}, reverse=True)[: policy.monthly]
    for month in months:
        assert max(t for t in stamps if (t.year, t.month) == month) in kept


def test_daily_weekly_monthly_example():
    start = datetime(2026, 1, 1, 2, 30, tzinfo=UTC)
    stamps = [start + timedelta(days=d) for d in range(120)]
    kept = sorted(keep(stamps, Policy(daily=7, weekly=4, monthly=3)))
    assert kept[-7:] == stamps[-7:]  # Apr 24-30
    # weeks: Apr 26 is already kept daily, then Apr 19 and Apr 12; months: Mar 31 and Feb 28
    extra = [datetime(2026, m, d, 2, 30, tzinfo=UTC) for m, d in ((2, 28), (3, 31), (4, 12), (4, 19))]
    assert kept == extra + stamps[-7:]


def _archive(repo: Repository, payload: bytes, parent=None, status=STATUS_VERIFIED, when=None):
    writer = ArchiveWriter(repo, parent=parent, archive_id=new_archive_id(when))
    writer.add_stream("database/citadel.db", "database", io.BytesIO(payload), writer.page_chunker(4096))
    manifest = writer.finish({"database": {"backend": "sqlite", "tables": {}}})
    repo.record(manifest["archive_id"], status, manifest["created"], 0, {"ok": True})
    return manifest


def test_prune_keeps_packs_shared_with_kept_archives(target, keys):
    repo = Repository.open(target, keys, create=True)
    base = bytearray(os.urandom(64 * 4096))
    now = datetime(2026, 3, 10, 12, tzinfo=UTC)
    manifests, parent = [], None
    for day in range(5):
        base[day * 4096] ^= 0xFF  # one page changes per day: later archives share old packs
        parent = _archive(repo, bytes(base), parent, when=now - timedelta(days=4 - day))
        manifests.append(parent)
    failed = _archive(repo, b"x" * 5000, status=STATUS_FAILED, when=now - timedelta(days=2))
    plan = prune(
        repo,
        Policy(daily=1, weekly=0, monthly=0),
        now=now + timedelta(hours=7),
        grace=timedelta(hours=6),
    )
    newest = manifests[-1]["archive_id"]
    assert plan.keep == [newest]
    assert sorted(plan.delete) == sorted([m["archive_id"] for m in manifests[:-1]] + [failed["archive_id"]])
    assert [r.archive_id for r in repo.good_archives()] == [newest]
    reader = ArchiveReader(repo, newest)  # its packs, mostly written by the first archive, remain
    for _ in reader.iter_file(reader.files()[0]):
        pass
    reader.check_all_packs()
    assert any(p["archive"] == manifests[0]["archive_id"] for p in reader.manifest["packs"])
    assert archive_time(newest) <= now


def test_prune_never_deletes_the_newest_verified_archive_even_with_zero_slots(target, keys):
    repo = Repository.open(target, keys, create=True)
    only = _archive(repo, os.urandom(9000), when=datetime(2020, 1, 1, tzinfo=UTC))
    plan = prune(repo, Policy(daily=0, weekly=0, monthly=0), grace=timedelta(0))
    assert plan.keep == [only["archive_id"]] and plan.delete == []


def test_keep_last_counts_archives_even_made_in_the_same_second():
    second = datetime(2026, 3, 2, 9, 14, 3, tzinfo=UTC)
    made = ["20260302T091403Z-aaaa", "20260302T091403Z-0000"]  # listed oldest first
    kept = keep(made, Policy(daily=0, weekly=0, monthly=0, last=1), lambda _archive: second)
    assert kept == {"20260302T091403Z-0000"}
