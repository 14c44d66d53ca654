"""Telling officers about a new alert: e-mail (SMTP), a webhook, and syslog in CEF.

Configured under ``[dlp.notify]`` in citadel.toml::

    [dlp.notify]
    smtp_host = "mail.example.com"   # smtp_port = 25, smtp_starttls = true
    mail_from = "citadel@example.com"
    mail_to = ["security@example.com"]
    webhook = "https://chat.example.com/hooks/abc"
    syslog = "udp://siem.example.com:514"

A channel that fails is logged and the others still go: an unreachable mail
server must never hide an alert (it is in the console either way). Messages
name the person, the scenario, the score and the reasons, never client data.
"""

from __future__ import annotations

import json
import logging
import smtplib
import socket
import urllib.request
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

from appliance.kernel.runtime import Appliance

log = logging.getLogger("citadel.dlp.notify")
CEF_SEVERITY = {"low": 3, "medium": 5, "high": 8, "critical": 10}


def notify(appliance: Appliance, alerts: list[Any]) -> dict[str, int]:
    """Send each alert on every configured channel; returns how many each channel sent."""
    config = appliance.settings.section("dlp").get("notify") or {}
    channels = {"mail": _mail, "webhook": _webhook, "syslog": _syslog}
    sent: dict[str, int] = {}
    for name, send in channels.items():
        for alert in alerts:
            try:
                if send(config, alert.public()):
                    sent[name] = sent.get(name, 0) + 1
            except Exception:  # one broken channel must not silence the others
                log.exception("could not send alert %s by %s", alert.id, name)
    return sent


def summary(alert: dict[str, Any]) -> str:
    return (f"[{alert['severity'].upper()}] {alert['user']}: {alert['scenario']} "
            f"(risk {alert['score']:.2f}) — " + "; ".join(alert["reasons"][:3]))


def _mail(config: dict[str, Any], alert: dict[str, Any]) -> bool:
    if not config.get("smtp_host") or not config.get("mail_to"):
        return False
    message = EmailMessage()
    message["Subject"] = f"Citadel alert: {summary(alert)[:150]}"
    message["From"] = config.get("mail_from", "citadel@localhost")
    recipients = config["mail_to"] if isinstance(config["mail_to"], list) else [config["mail_to"]]
    message["To"] = ", ".join(recipients)
    message.set_content(summary(alert) + "\n\n" + "\n".join(f"- {r}" for r in alert["reasons"])
                        + f"\n\nOpen alert {alert['id']} in the Citadel console.")
    with smtplib.SMTP(config["smtp_host"], int(config.get("smtp_port", 25)), timeout=10) as smtp:
        if config.get("smtp_starttls"):
            smtp.starttls()
        if config.get("smtp_user"):
            smtp.login(config["smtp_user"], config.get("smtp_password", ""))
        smtp.send_message(message)
    return True


def _webhook(config: dict[str, Any], alert: dict[str, Any]) -> bool:
    url = config.get("webhook")
    if not url:
        return False
    if urlsplit(url).scheme not in ("https", "http"):
        raise ValueError("the webhook must be an http(s) URL")
    body = json.dumps({"text": summary(alert), "alert": alert}).encode()
    request = urllib.request.Request(url, data=body, method="POST",  # noqa: S310 (scheme checked)
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return 200 <= response.status < 300


def cef(alert: dict[str, Any]) -> str:
    """The alert as one CEF line (ArcSight Common Event Format)."""
    def esc(value: Any) -> str:
        return str(value).replace("\\", "\\\\").replace("=", "\\=").replace("\n", " ")

    head = "|".join(str(x).replace("|", "\\|") for x in (
        "CEF:0", "Citadel", "Citadel", "1", f"dlp.{alert['scenario']}", "Client base leak risk",
        CEF_SEVERITY.get(alert["severity"], 5)))
    ext = {"suser": alert["user"], "rt": alert["ts"], "cs1Label": "reasons",
           "cs1": "; ".join(alert["reasons"]), "cn1Label": "alert", "cn1": alert["id"],
           "cfp1Label": "score", "cfp1": alert["score"]}
    return head + "|" + " ".join(f"{k}={esc(v)}" for k, v in ext.items())


def _syslog(config: dict[str, Any], alert: dict[str, Any]) -> bool:
    target = config.get("syslog")
    if not target:
        return False
    parts = urlsplit(target)
    if parts.scheme not in ("udp", "tcp") or not parts.hostname:
        raise ValueError("syslog must look like udp://host:514 or tcp://host:514")
    line = f"<{8 * 4 + 2}>1 {alert['ts']} citadel citadel - dlp - {cef(alert)}"  # auth.crit
    kind = socket.SOCK_DGRAM if parts.scheme == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.settimeout(5)
        sock.connect((parts.hostname, parts.port or 514))
        sock.sendall(line.encode() + (b"\n" if kind == socket.SOCK_STREAM else b""))
    return True
