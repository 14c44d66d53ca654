"""The kernel: what every package may import, and which imports no package above it.

``errors`` (errors with exit codes), ``config`` (settings), ``db`` (engine and the one
session per request), ``orm`` (naming and UTC types for each package's tables),
``runtime`` (one appliance: settings and database), ``cli`` (what every command shares),
``paging`` and ``http`` (lists in pages, JSON bodies, error answers), ``permissions``
(the names of rights), ``principal`` (the signed-in user and ``require(cap)``),
``openapi`` (the API document's shared pieces), ``charts`` and ``hooks``.
"""
