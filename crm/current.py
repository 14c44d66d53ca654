"""The signed-in user's access policy for the request being served."""

from __future__ import annotations

from typing import cast

from appliance.kernel.principal import rights
from crm.access import Policy


def policy() -> Policy:
    """The signed-in user's access policy, built once per request (``crm.access.Policy``
    is the factory the CRM provides to the kernel's ``rights()``)."""
    return cast(Policy, rights())
