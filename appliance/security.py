"""Browser-facing protections: CSRF on every form, a strict Content-Security-
Policy, and the security headers every response carries.

The CSP allows only the appliance's own scripts and styles (no inline code),
so a stored value that slips into a page still cannot run.
"""

from __future__ import annotations

from flask import Flask, Response, request
from flask_wtf.csrf import CSRFProtect

from appliance.kernel.config import Settings

csrf = CSRFProtect()

def content_security_policy(card_agent: str) -> str:
    """Only our own files; scripts may also talk to the workstation's card agent."""
    return "; ".join([
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        f"connect-src 'self' {card_agent}",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    ])


HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), usb=()",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def init_app(app: Flask, settings: Settings) -> None:
    from appliance.card_login import agent_url

    csrf.init_app(app)
    hsts = bool(settings["secure_cookies"])
    headers = {"Content-Security-Policy": content_security_policy(agent_url(settings)), **HEADERS}

    @app.after_request
    def add_headers(response: Response) -> Response:
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        if hsts:
            response.headers.setdefault("Strict-Transport-Security",
                                        "max-age=63072000; includeSubDomains")
        if not request.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response
