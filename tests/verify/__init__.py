"""The long "prove it holds" suite: a crowd of staff under load, crashes and faults.

``.venv/bin/python -m tests.verify.run`` runs all of it and prints one summary
table; the quick variants run inside ``make test`` (tests/verify/test_*.py).
"""
