"""The ``[audit]`` table of citadel.toml, with its defaults.

```
[audit]
checkpoint_every = 1000        # sign a checkpoint after this many new events ...
checkpoint_seconds = 300       # ... or when the newest is this old, whichever comes first
syslog_socket = "/dev/log"     # local syslog socket for checkpoint lines ("" to switch off)
signer = "file"                # who signs checkpoints (see audit.signing.PROVIDERS)
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.kernel.errors import ConfigError

AUDIT_DIR = "audit"


@dataclass(frozen=True)
class AuditConfig:
    """Validated audit settings and the paths under the data directory."""

    data_dir: Path
    checkpoint_every: int = 1000
    checkpoint_seconds: float = 300.0
    syslog_socket: str = "/dev/log"
    signer: str = "file"

    @property
    def directory(self) -> Path:
        return self.data_dir / AUDIT_DIR

    @property
    def anchor_path(self) -> Path:
        return self.directory / "anchor.log"

    @property
    def archive_dir(self) -> Path:
        return self.directory / "archive"

    @property
    def forward_dir(self) -> Path:
        return self.directory / "forward"

    @classmethod
    def from_settings(cls, settings: Any) -> AuditConfig:
        """From an ``appliance.kernel.config.Settings`` (or an ``AuditConfig``, returned as is)."""
        if isinstance(settings, AuditConfig):
            return settings
        values = settings.section("audit")
        every = values.get("checkpoint_every", cls.checkpoint_every)
        seconds = values.get("checkpoint_seconds", cls.checkpoint_seconds)
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ConfigError(detail="[audit] checkpoint_every must be a whole number >= 1")
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0:
            raise ConfigError(detail="[audit] checkpoint_seconds must be a number > 0")
        return cls(
            data_dir=Path(settings.data_dir),
            checkpoint_every=every,
            checkpoint_seconds=float(seconds),
            syslog_socket=str(values.get("syslog_socket", cls.syslog_socket)),
            signer=str(values.get("signer", cls.signer)),
        )
