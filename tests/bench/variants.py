"""Variants of the app for benchmarks only: the same code with one layer switched off,
so that the layer's cost can be measured in the same run. Never used by the product.

    gunicorn 'tests.bench.variants:policy_off()'   # every query unfiltered, every field shown
    gunicorn 'tests.bench.variants:plaintext()'    # encrypted fields read without decrypting
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask
from sqlalchemy import true

from appliance.app import create_app
from appliance.kernel.runtime import Appliance


def _app() -> Flask:
    return create_app(Appliance.open(os.environ["CITADEL_DATA_DIR"]))


def policy_off() -> Flask:
    """The access policy adds no filter and no mask (what the rights cost, by difference)."""
    from crm.access import Level, Policy

    Policy.where = lambda self, entity, action="read": true()  # type: ignore[method-assign]
    Policy.level = lambda self, entity, field_name: Level.EDIT  # type: ignore[method-assign]
    return _app()


def plaintext() -> Flask:
    """Encrypted fields are read as if they were plain columns (what decryption costs)."""
    from appliance.keys.fields import EncryptedField

    def plain_get(self: EncryptedField, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return self
        stored = getattr(obj, self.attr)
        return "" if stored is None else "plain value"

    EncryptedField.__get__ = plain_get  # type: ignore[method-assign]
    return _app()
