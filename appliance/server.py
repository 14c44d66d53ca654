"""Serving the app with gunicorn: the app is built in each worker after the
fork, so no database connection is ever shared between processes."""

from __future__ import annotations

import errno
import socket
from typing import Any

from gunicorn.app.base import BaseApplication

from appliance.kernel.errors import ConfigError
from appliance.kernel.runtime import Appliance

SERVE_PORT_HINT = "choose another with `appliance serve --bind HOST:PORT` or the bind setting (CITADEL_BIND)"


class CitadelServer(BaseApplication):
    def __init__(self, appliance: Appliance, options: dict[str, Any]) -> None:
        self.appliance = appliance
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from appliance.app import create_app

        return create_app(Appliance(self.appliance.settings))


def run(appliance: Appliance, bind: str, workers: int) -> None:
    appliance.dispose()  # the parent keeps no connections across the fork
    CitadelServer(appliance, {
        "bind": bind,
        "workers": workers,
        "worker_class": "sync",
        "timeout": 60,
        "graceful_timeout": 20,
        "accesslog": "-",
        "access_log_format": '%(h)s "%(r)s" %(s)s %(b)s %(M)sms',
        "forwarded_allow_ips": "127.0.0.1",
        "proc_name": "citadel",
        "control_socket_disable": True,  # one appliance, no gunicorn control socket shared in $HOME
        # gunicorn's largest request line: addresses up to it reach the app, which refuses
        # those over its own limit (appliance.kernel.http.URL_LIMIT) with its own page
        "limit_request_line": 8190,
    }).run()


def ensure_free(bind: str, hint: str = SERVE_PORT_HINT) -> None:
    """Fail with one line when ``bind`` is malformed or taken, before gunicorn retries it."""
    host, sep, port = bind.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(detail=f"bind must be HOST:PORT, such as 127.0.0.1:8000 (got {bind!r})")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            probe.bind((host, int(port)))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(detail=f"port {port} on {host} is already in use; {hint}.") from None
            raise ConfigError(detail=f"cannot listen on {bind} ({exc.strerror}); {hint}.") from None
