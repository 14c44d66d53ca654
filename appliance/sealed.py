"""The web app while the box is sealed: nothing but a page that says so, and ``/healthz``.

Client data is encrypted with keys that exist only after officers unseal the
appliance (``appliance keys unseal``). Until then every page answers 503 with
what to do; the moment any process unseals, the kernel keyring tells every
worker, and the next request is served normally.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, render_template, request

from appliance import keys
from appliance.kernel.config import Settings
from appliance.kernel.errors import CitadelError, Sealed
from appliance.kernel.http import error_response, wants_json
from appliance.keys.errors import KeysNotInitialised

OPEN_WHEN_SEALED = ("/static/", "/healthz")
log = logging.getLogger("citadel.keys")


def state(settings: Settings) -> tuple[bool, str]:
    """(sealed, why) for this appliance, following the kernel keyring."""
    try:
        return keys.sync(settings.data_dir) is None, ""
    except CitadelError as exc:  # keys not initialised, keyring unavailable
        return True, exc.message


def start(settings: Settings) -> None:
    """At process start: the crypto self-test, then unseal a demo or follow the kernel keyring.

    A box whose keys are not created yet still starts (it serves its sealed page, which
    says what to do); a failing self-test stops the process.
    """
    try:
        keys.start(settings)
    except KeysNotInitialised:
        log.warning("no keys yet in %s: serving the sealed page until `appliance keys init`",
                    settings.data_dir)


def init_app(app: Flask, settings: Settings) -> None:
    start(settings)

    @app.before_request
    def _sealed_gate() -> Any:
        if request.path.startswith(OPEN_WHEN_SEALED):
            return None
        sealed, why = state(settings)
        if not sealed:
            return None
        if wants_json():
            return error_response(503, Sealed.code, why or Sealed().message)
        return render_template("sealed.html", why=why), 503
