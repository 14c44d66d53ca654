"""What encryption costs, and what name search leaks: prints figures, asserts nothing.

    .venv/bin/python -m tests.bench.bench_crypto [--contacts 20000]

1. Field encryption and decryption (µs per value), against a bare AES-GCM call.
2. Blind index cost (µs per value), against a bare HMAC-SHA256 call.
3. The per-request seal check and an ORM page of 50 rows.
4. Attachments (MB/s), against one-shot AES-GCM over the same bytes.
5. Unsealing: Argon2id per share at the default cost.
6. Name search designs over synthetic contacts: index size, query time, false
   positives, and how many rows a frequency-analysis attacker labels correctly.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.keys import (
    KdfParams,
    PassphraseHolder,
    attachments,
    blind,
    fields,
    sealing,
    state,
)
from appliance.keys.primitives import hmac_sha256


def per_call_us(func: Callable[[], object], *, number: int = 2000, repeat: int = 5) -> float:
    """Median over ``repeat`` runs of the mean time of ``number`` calls, in microseconds."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        for _ in range(number):
            func()
        runs.append((time.perf_counter_ns() - start) / number / 1000)
    return statistics.median(runs)


def row(label: str, value: float, unit: str, baseline: float | None = None) -> None:
    ratio = f"   x{value / baseline:5.2f} of baseline" if baseline else ""
    print(f"  {label:<46} {value:10.2f} {unit}{ratio}")


def bench_fields() -> None:
    print("\n1. Field encryption (AES-256-GCM, AD = table/column/row/version, PKCS#7 to 16 B)")
    row_id = uuid.uuid4()
    key = os.urandom(32)
    bare = AESGCM(key)
    nonce = os.urandom(12)
    for label, value in (("e-mail (24 B)", "jane.doe@client.example"),
                         ("note (1 KiB)", "x" * 1024)):
        data = value.encode()
        base_enc = per_call_us(lambda d=data: bare.encrypt(nonce, d, b"ad"))
        blob = fields.encrypt_value("accounts", "email", row_id, value)
        enc = per_call_us(lambda v=value: fields.encrypt_value("accounts", "email", row_id, v))
        sealed_bare = bare.encrypt(nonce, data, b"ad")
        base_dec = per_call_us(lambda s=sealed_bare: bare.decrypt(nonce, s, b"ad"))
        dec = per_call_us(lambda b=blob: fields.decrypt_value("accounts", "email", row_id, b))
        row(f"bare AESGCM.encrypt, {label}", base_enc, "µs")
        row(f"encrypt_value, {label}", enc, "µs", base_enc)
        row(f"bare AESGCM.decrypt, {label}", base_dec, "µs")
        row(f"decrypt_value, {label}", dec, "µs", base_dec)
        row(f"stored size, {label}", len(blob), "bytes", len(data))


def bench_blind() -> None:
    print("\n2. Blind index (HMAC-SHA256 truncated to 16 B, per-column key)")
    key = os.urandom(32)
    base = per_call_us(lambda: hmac_sha256(key, b"jane.doe@client.example"))
    row("bare HMAC-SHA256", base, "µs")
    for kind, value in (("email", " Jane.Doe@Client.example "), ("phone", "+49 (30) 1234-567"),
                        ("tax_id", "DE 123.456.789")):
        cost = per_call_us(lambda k=kind, v=value: blind.blind_index("accounts", k, k, v))
        row(f"blind_index {kind}", cost, "µs", base)
    cost = per_call_us(lambda: blind.blind_terms("accounts", "email", "email", "a@b.example"))
    row("blind_terms (query side, 1 key version)", cost, "µs", base)


def bench_request(data_dir: Path) -> None:
    print("\n3. Per request and per page")
    sync = per_call_us(lambda: state.sync(data_dir), number=5000)
    row("state.sync (kernel keyring read + stat)", sync, "µs")
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from tests.keys.models import Base, Client

    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all(Client(name=f"c{i}", email=f"c{i}@x.example", phone=f"+1 555 {i:04}",
                               notes="n" * 500) for i in range(50))
        session.commit()

    def page(read: Callable[[Client], object]) -> None:
        with Session(engine) as session:
            for client in session.scalars(select(Client).limit(50)):
                read(client)

    base = per_call_us(lambda: page(lambda c: c.name), number=50) / 1000
    row("50-row ORM page, clear column only", base, "ms")
    one = per_call_us(lambda: page(lambda c: c.email), number=50) / 1000
    row("50-row ORM page, 1 encrypted field shown", one, "ms", base)
    three = per_call_us(lambda: page(lambda c: (c.email, c.phone, c.tax_id)), number=50) / 1000
    row("50-row ORM page, 3 encrypted fields shown", three, "ms", base)
    deferred = per_call_us(lambda: page(lambda c: c.notes), number=50) / 1000
    row("50-row ORM page, 1 deferred field (a query each)", deferred, "ms", base)
    engine.dispose()


def bench_attachments(tmp: Path) -> None:
    print("\n4. Attachments (64 KiB STREAM segments, SHA-256 checked)")
    data = os.urandom(16 * 1024 * 1024)
    mb = len(data) / 1e6
    bare = AESGCM(os.urandom(32))
    start = time.perf_counter()
    bare.encrypt(os.urandom(12), data, None)
    base = mb / (time.perf_counter() - start)
    path = tmp / "a.enc"
    start = time.perf_counter()
    attachments.write_encrypted(path, "bench", io.BytesIO(data))
    write = mb / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in attachments.open_decrypted(path, "bench"):
        pass
    read = mb / (time.perf_counter() - start)
    row("bare one-shot AES-GCM, 16 MB in memory", base, "MB/s")
    row("write_encrypted, 16 MB to disk", write, "MB/s", base)
    row("open_decrypted, 16 MB from disk", read, "MB/s", base)


def bench_unseal() -> None:
    print("\n5. Unsealing: one share's Argon2id at the default cost "
          f"({KdfParams().memory_kib // 1024} MiB, t={KdfParams().time_cost}, "
          f"p={KdfParams().parallelism})")
    holder = PassphraseHolder("bench", "a long enough passphrase")
    blob = holder.seal(os.urandom(32))
    start = time.perf_counter()
    PassphraseHolder("bench").open(blob, lambda _p: "a long enough passphrase")
    row("open one passphrase share", (time.perf_counter() - start) * 1000, "ms")


# -- 6. name search --------------------------------------------------------------------


POPULATIONS = {
    "Faker de/en/fr mix (flat name lists)": ["de_DE", "en_US", "fr_FR"],
    "Faker en_US (US census name frequencies)": ["en_US"],
}


def synthetic_names(count: int, seed: int, locales: list[str]) -> list[tuple[str, str]]:
    from faker import Faker

    fake = Faker(locales)
    fake.seed_instance(seed)
    return [(fake.first_name(), fake.last_name()) for _ in range(count)]


def build_index(names: list[tuple[str, str]], keyring, *, prefixes: bool,
                length: int) -> list[tuple[int, bytes, str]]:
    """(row, token, the plaintext it stands for) for every token of every name."""
    version = keyring.current_version("blind_index")
    out = []
    for i, (first, last) in enumerate(names):
        words = set(blind.name_tokens(f"{first} {last}"))
        plain = {p for w in words for p in (blind.token_prefixes(w) if prefixes else [w])}
        out.extend((i, blind.index_of(keyring, version, "contacts", "name", p, length), p)
                   for p in plain)
    return out


def public_distribution(aux: list[tuple[str, str]], prefixes: bool) -> list[str]:
    counts: Counter[str] = Counter()
    for first, last in aux:
        words = set(blind.name_tokens(f"{first} {last}"))
        counts.update({p for w in words for p in (blind.token_prefixes(w) if prefixes else [w])})
    return [text for text, _ in counts.most_common()]


def frequency_attack(index: list[tuple[int, bytes, str]],
                     public: list[str]) -> tuple[float, float]:
    """Shares of stored tokens, and of rows with at least one token, an attacker decodes.

    The attacker holds the token table and the public distribution of name
    words (``public``: an independent sample from the same population, as a
    census would give). They rank tokens by how many rows carry them, rank the
    public words (or prefixes) by frequency, and pair them rank for rank.
    """
    seen = Counter(token for _row, token, _plain in index)
    guess = dict(zip([t for t, _ in seen.most_common()], public, strict=False))
    hits = [(row, guess.get(token) == plain) for row, token, plain in index]
    rows = {row for row, _ in hits}
    exposed = {row for row, hit in hits if hit}
    return sum(hit for _row, hit in hits) / len(hits), len(exposed) / len(rows)


def bench_name_search(keyring, contacts: int, population: str) -> None:
    print(f"\n6. Name search over {contacts} contacts: {population}, seeded")
    names = synthetic_names(contacts, 1, POPULATIONS[population])
    aux = synthetic_names(contacts, 2, POPULATIONS[population])
    rng = random.Random(3)
    queries = [blind.fold(names[rng.randrange(contacts)][1])[: rng.choice((3, 4, 5))]
               for _ in range(200)]
    queries = [q for q in queries if len(q) >= 3]
    words = [set(blind.name_tokens(f"{first} {last}")) for first, last in names]
    prefix_truth = {q: {i for i, ws in enumerate(words) if any(w.startswith(q) for w in ws)}
                    for q in queries}
    word_truth = {q: {i for i, ws in enumerate(words) if q in ws} for q in queries}

    clear = sqlite3.connect(":memory:")
    clear.execute("CREATE TABLE w (word TEXT, id INTEGER)")
    clear.executemany("INSERT INTO w VALUES (?, ?)", [(w, i) for i, ws in enumerate(words)
                                                       for w in ws])
    clear.execute("CREATE INDEX w_word ON w(word)")
    start = time.perf_counter()
    for q in queries:
        clear.execute("SELECT DISTINCT id FROM w WHERE word >= ? AND word < ?",
                      (q, q + "\uffff")).fetchall()
    base_ms = (time.perf_counter() - start) / len(queries) * 1000
    print(f"  {'design':<32}{'tokens/name':>12}{'index rows':>11}{'query ms':>10}"
          f"{'false pos.':>11}{'tokens read':>12}{'rows hit':>10}")
    print(f"  {'folded words in clear (baseline)':<32}{'-':>12}{'-':>11}{base_ms:>10.3f}"
          f"{'0%':>11}{'100%':>12}{'100%':>10}")
    for label, prefixes, length in (("blind whole words, 16 B", False, 16),
                                    ("blind prefixes >=3, 16 B", True, 16),
                                    ("blind prefixes >=3, 3 B", True, 3),
                                    ("blind prefixes >=3, 2 B", True, 2)):
        index = build_index(names, keyring, prefixes=prefixes, length=length)
        db = sqlite3.connect(":memory:")
        db.execute("CREATE TABLE t (token BLOB, id INTEGER)")
        db.executemany("INSERT INTO t VALUES (?, ?)", [(tok, i) for i, tok, _p in index])
        db.execute("CREATE INDEX t_token ON t(token)")
        terms = {q: sorted(blind.name_search_terms("contacts", "name", q, keyring=keyring,
                                                   length=length)[0]) for q in queries}
        start = time.perf_counter()
        hits = {q: {r for (r,) in db.execute(
            f"SELECT DISTINCT id FROM t WHERE token IN ({','.join('?' * len(terms[q]))})",  # noqa: S608
            terms[q])} for q in queries}
        query_ms = (time.perf_counter() - start) / len(queries) * 1000
        truth = prefix_truth if prefixes else word_truth
        found = sum(len(h) for h in hits.values())
        false_pos = sum(len(hits[q] - truth[q]) for q in queries)
        tokens, rows = frequency_attack(index, public_distribution(aux, prefixes))
        print(f"  {label:<32}{len(index) / contacts:>12.1f}{len(index):>11}{query_ms:>10.3f}"
              f"{false_pos / max(found, 1):>11.1%}{tokens:>12.1%}{rows:>10.1%}")
    print("  query ms: SQLite in memory, before decrypting candidates to drop false positives;")
    print("  whole words find only whole words. tokens read / rows hit: stored tokens, and rows")
    print("  with at least one token, that rank-matching against public name statistics decodes")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=20_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        fast = KdfParams(1, 8, 1)
        init = sealing.init_keys(data_dir, threshold=1,
                                 holders=[PassphraseHolder("bench", "bench passphrase", fast)],
                                 share_dir=Path(tmp) / "shares")
        keyring = sealing.unseal_with_recovery(data_dir, init.recovery_key)
        try:
            print("Citadel crypto benchmark (single thread; medians of 5 runs)")
            bench_fields()
            bench_blind()
            bench_request(data_dir)
            bench_attachments(Path(tmp))
            bench_unseal()
            for population in POPULATIONS:
                bench_name_search(keyring, args.contacts, population)
        finally:
            sealing.seal_now(data_dir)


if __name__ == "__main__":
    main()
