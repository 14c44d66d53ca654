"""Smart cards: a PIV client over PC/SC, card login, sealing secrets to cards.

- ``piv``: talk to a PIV card (YubiKey or any SP 800-73-4 card): PIN, certificates,
  signing with slot 9A, ECDH with slot 9D.
- ``challenge``: the server side of card login (nonce, signed bytes, verification).
- ``seal``: encrypt a small secret to a card's 9D key; open it with the card.
- ``enrolment``: read what the server must store when a card is enrolled.
- ``agent``: the workstation card agent (localhost HTTP, strict origin check).
- ``virtual`` and ``stack``: a virtual PIV card and a private pcscd, for tests and demos.

Only ``challenge`` and ``seal.seal_to_card`` run without pyscard.
"""

#: The card agent's default port on 127.0.0.1; the web page calls it there.
AGENT_PORT = 18765
