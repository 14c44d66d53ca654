"""Where the CRM calls leak monitoring, as hooks the composition root connects.

The CRM knows that exports and prints are marked and that a file imported back loses
its decoys; how is leak monitoring's business (``dlp.watermark``, ``dlp.trace``), so
the CRM never imports it.
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
