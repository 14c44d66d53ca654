"""Where an appliance lives and how it is configured.

One appliance is one data directory. Its ``citadel.toml`` holds the settings;
any of them can be overridden by a ``CITADEL_*`` environment variable
(``CITADEL_DATABASE_URL``; nested tables with a double underscore,
``CITADEL_BACKUP__SCHEDULE``). Values from the environment are parsed as TOML
scalars when they can be, so ``CITADEL_DEMO=true`` is a boolean.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.kernel.errors import ConfigError, NotInitialised

CONFIG_FILE = "citadel.toml"
SECRET_FILE = "secret_key"  # noqa: S105 (a file name, not a secret)
ENV_PREFIX = "CITADEL_"

DEFAULTS: dict[str, Any] = {
    "database_url": "",
    "demo": False,
    "session_idle_minutes": 30,
    "session_max_hours": 12,
    "login_max_failures": 5,
    "login_window_minutes": 15,
    "bind": "127.0.0.1:8000",
    "secure_cookies": True,
    "trusted_proxies": 0,
}


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """The data directory from the option, else ``CITADEL_DATA_DIR``, else ``./citadel-data``."""
    chosen = data_dir or os.environ.get("CITADEL_DATA_DIR") or "citadel-data"
    return Path(chosen).expanduser().resolve()


@dataclass
class Settings:
    """An appliance's settings, read from its data directory and the environment."""

    data_dir: Path
    values: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def section(self, name: str) -> dict[str, Any]:
        return dict(self.values.get(name) or {})

    @property
    def database_url(self) -> str:
        return self.values["database_url"] or f"sqlite:///{self.data_dir / 'citadel.db'}"

    @property
    def secret_key(self) -> bytes:
        path = self.data_dir / SECRET_FILE
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise NotInitialised(data_dir=self.data_dir) from None

    @classmethod
    def load(cls, data_dir: str | os.PathLike[str] | None = None, *, must_exist: bool = True,
             environ: dict[str, str] | None = None) -> Settings:
        """Read ``citadel.toml`` from the data directory, then apply the environment."""
        root = resolve_data_dir(data_dir)
        path = root / CONFIG_FILE
        values = dict(DEFAULTS)
        if path.exists():
            try:
                values.update(tomllib.loads(path.read_text()))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(detail=f"{path} is not valid TOML ({exc})") from exc
        elif must_exist:
            raise NotInitialised(data_dir=root)
        _apply_environment(values, os.environ if environ is None else environ)
        return cls(root, values)


def _apply_environment(values: dict[str, Any], environ: dict[str, str] | os._Environ[str]) -> None:
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == "CITADEL_DATA_DIR":
            continue
        if name.startswith("CITADEL_TEST_"):
            continue
        path = name[len(ENV_PREFIX):].lower().split("__")
        target = values
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = _parse_scalar(raw)


def _parse_scalar(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def write_initial(data_dir: Path, values: dict[str, Any]) -> Path:
    """Create the data directory with its config file and session secret (0600)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    secret = data_dir / SECRET_FILE
    if not secret.exists():
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(32))
    path = data_dir / CONFIG_FILE
    path.write_text(dump_toml(values))
    os.chmod(path, 0o600)
    return path


def dump_toml(values: dict[str, Any]) -> str:
    """A small TOML writer for what this file holds: scalars, lists and nested tables."""
    lines: list[str] = ["# Citadel appliance settings. CITADEL_* environment variables override these."]
    _dump_table(lines, [], values)
    return "\n".join(lines) + "\n"


def _dump_table(lines: list[str], path: list[str], table: dict[str, Any]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    if path and (scalars or not table):
        lines.append(f"\n[{'.'.join(path)}]")
    lines.extend(f"{key} = {_toml_value(value)}" for key, value in scalars.items())
    for key, value in table.items():
        if isinstance(value, dict):
            _dump_table(lines, [*path, key], value)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
