"""Serving the app with gunicorn: the app is built in each worker after the
fork, so no database connection is ever shared between processes."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from appliance.kernel.runtime import Appliance


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
    }).run()
