"""Smart-card timings through the real stack: pcscd + vpcd + the virtual PIV card.

    .venv/bin/python -m tests.bench.bench_cards [--apdus 500] [--logins 50]

Prints median and p95 of: one APDU round trip (with the applet alone, in
process, as the baseline), a PIV sign (open, PIN, sign), and a full card login
(challenge -> card agent over HTTP -> verification) without PIN typing, against
a software-only login as the baseline. Target: a card login under 300 ms.
"""

from __future__ import annotations

import argparse
import http.client
import json
import secrets
import statistics
import threading
import time
from base64 import b64decode
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.cards.agent import CardAgent
from appliance.cards.applet import PivApplet
from appliance.cards.challenge import ChallengeIssuer, MemoryNonceLedger, parse_token
from appliance.cards.piv import PivSession
from appliance.cards.spec import Slot
from appliance.cards.stack import PcscStack
from appliance.cards.virtual_state import VirtualCardState

ORIGIN = "https://citadel.example.com"
PIN = "123456"
SELECT = bytes.fromhex("00A4040009A0000003080000100000")
GET_DISCOVERY = bytes.fromhex("00CB3FFF035C017E00")


def measure(action: Callable[[], object], runs: int) -> list[float]:
    """Milliseconds per call of ``action`` over ``runs`` calls (after one warm-up)."""
    action()
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        timings.append((time.perf_counter() - start) * 1000)
    return timings


def report(label: str, timings: list[float], baseline: list[float] | None = None) -> float:
    median = statistics.median(timings)
    p95 = statistics.quantiles(timings, n=20)[-1] if len(timings) >= 20 else max(timings)
    line = f"{label:<44} median {median:8.3f} ms   p95 {p95:8.3f} ms"
    if baseline:
        line += f"   x{median / statistics.median(baseline):.1f} baseline"
    print(line, flush=True)
    return median


def agent_login(agent: CardAgent, issuer: ChallengeIssuer, ledger: MemoryNonceLedger,
                enrolled: ec.EllipticCurvePublicKey) -> None:
    """One web login: issue, have the agent sign over HTTP, verify and claim the nonce."""
    session = secrets.token_hex(16)
    token = issuer.issue(session, ORIGIN)
    connection = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=30)
    connection.request("POST", "/sign", json.dumps({"challenge": token, "pin": PIN}),
                       {"Origin": ORIGIN, "Content-Type": "application/json",
                        "Host": f"127.0.0.1:{agent.port}"})
    body = json.loads(connection.getresponse().read())
    connection.close()
    issuer.verify(token, b64decode(body["signature"]), enrolled, session, ORIGIN, ledger.claim)


def software_login(issuer: ChallengeIssuer, ledger: MemoryNonceLedger,
                   key: ec.EllipticCurvePrivateKey) -> None:
    """The same login with the key in memory: the cost of the protocol alone."""
    session = secrets.token_hex(16)
    token = issuer.issue(session, ORIGIN)
    signature = key.sign(parse_token(token).to_be_signed(), ec.ECDSA(hashes.SHA256()))
    issuer.verify(token, signature, key.public_key(), session, ORIGIN, ledger.claim)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apdus", type=int, default=500)
    parser.add_argument("--logins", type=int, default=50)
    args = parser.parse_args(argv)

    state = VirtualCardState.generate(pin=PIN)
    key = state.keys[Slot.AUTHENTICATION]
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    with PcscStack() as stack:
        card = stack.new_card(state)
        stack.insert(card)
        applet = PivApplet(VirtualCardState.from_json(state.to_json()))
        applet.process(SELECT)
        in_process = measure(lambda: applet.process(GET_DISCOVERY), args.apdus)
        report("APDU, applet in process (baseline)", in_process)
        with PivSession.open() as piv:
            channel = piv._channel  # the raw channel: one APDU, no client logic
            report("APDU round trip, pyscard+pcscd+vpcd", measure(
                lambda: channel.transmit(GET_DISCOVERY), args.apdus), in_process)

        def card_sign() -> None:
            with PivSession.open() as piv:
                piv.verify_pin(PIN)
                piv.sign(b"challenge", public_key=key.public_key())

        report("PIV open + PIN + sign (P-256)", measure(card_sign, args.logins))

        issuer, ledger = ChallengeIssuer(secrets.token_bytes(32)), MemoryNonceLedger()
        software = measure(lambda: software_login(issuer, ledger, key), args.logins)
        report("login, key in memory (baseline)", software)
        agent = CardAgent([ORIGIN], reader=stack.reader, port=0)
        server = threading.Thread(target=agent.serve_forever, args=(0.05,), daemon=True)
        server.start()
        try:
            median = report("card login: challenge -> agent -> verify", measure(
                lambda: agent_login(agent, issuer, ledger, key.public_key()), args.logins),
                software)
        finally:
            agent.shutdown()
            agent.server_close()
        card.remove()
    print(f"card login target < 300 ms: {'met' if median < 300 else 'MISSED'}")


if __name__ == "__main__":
    main()
