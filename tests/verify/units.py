"""The appliance's systemd units, read from the provisioning templates.

The supervisor in ``tests.verify.supervisor`` restarts processes the way these
units tell systemd to: ``Restart=``, ``RestartSec=``, ``TimeoutStopSec=`` and
the ``ExecStart=`` arguments come from the templates themselves, so the tests
follow the units when they change.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

TEMPLATES = (Path(__file__).resolve().parents[2] / "provisioning" / "roles" / "citadel"
             / "templates" / "etc" / "systemd" / "system")
INCLUDE = re.compile(r"{%\s*include\s+'([^']+)'\s*%}")
JINJA_VAR = re.compile(r"{{\s*(\w+)\s*}}")
# systemd's defaults for what the units leave unset (systemd.unit(5), systemd.service(5))
DEFAULTS = {"Restart": "no", "RestartSec": "100ms", "TimeoutStopSec": "90s",
            "StartLimitIntervalSec": "10s", "StartLimitBurst": "5"}


@dataclass(frozen=True)
class Unit:
    """What the supervisor needs from one unit."""

    name: str
    exec_args: tuple[str, ...]  # ExecStart after the appliance binary; {variables} left in
    restart: str
    restart_sec: float
    timeout_stop_sec: float
    start_limit_interval: float
    start_limit_burst: int


def seconds(value: str) -> float:
    """A systemd time span (``5s``, ``100ms``, ``1min 30s``, ``2``) in seconds."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"([\d.]+)\s*([a-z]*)", value.strip()):
        total += float(number) * units.get(unit or "s", 1)
    return total


def _expanded(path: Path) -> str:
    text = path.read_text()
    return INCLUDE.sub(lambda m: (TEMPLATES.parents[2] / m.group(1)).read_text(), text)


def load(name: str) -> Unit:
    """``citadel-web`` or ``citadel-worker``, as its template describes it."""
    values = dict(DEFAULTS)
    exec_start = ""
    for line in _expanded(TEMPLATES / f"{name}.service.j2").splitlines():
        key, sep, value = line.partition("=")
        if not sep or line.lstrip().startswith("#"):
            continue
        key = key.strip()
        if key == "ExecStart":
            exec_start = value.strip()
        elif key in DEFAULTS:
            values[key] = value.strip()
    # "{{ citadel_appliance }} serve --bind {{ citadel_bind }}": the binary is the test's own,
    # variables become "{citadel_bind}" for the test to fill in with str.format
    argv = shlex.split(JINJA_VAR.sub(lambda m: "{" + m.group(1) + "}", exec_start))
    args = tuple(argv[1:])
    return Unit(name, args, values["Restart"], seconds(values["RestartSec"]),
                seconds(values["TimeoutStopSec"]), seconds(values["StartLimitIntervalSec"]),
                int(values["StartLimitBurst"]))
