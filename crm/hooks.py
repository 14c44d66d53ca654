"""Where the CRM calls packages above it, as hooks the composition root connects.

The CRM knows that exports and prints are marked and that a file imported back loses
its decoys; how is leak monitoring's business (``dlp.watermark``, ``dlp.trace``), so
the CRM never imports it. Likewise the menu, which knows every package's pages, is the
composition root's (``appliance.web``).
"""

from __future__ import annotations

from appliance.kernel.hooks import Hook

#: Marks an export or print for its user so a leaked copy names its source:
#: ``plan``, ``apply``, ``apply_records``, ``record``, ``footer`` and ``plain``
#: (``dlp.watermark``).
watermark = Hook("crm.watermark")

#: ``canary_positions(db, header, rows)``: the rows of a file imported back that are
#: decoy canaries, which must never become real records (``dlp.trace``).
canary_positions = Hook("crm.canary_positions")

#: ``first_tool()``: the address of the signed-in person's first menu entry, where someone
#: whose role works with no client records starts (``appliance.web.first_tool``).
first_tool = Hook("crm.first_tool")
