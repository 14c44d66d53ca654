"""The optional streaming replica, rendered through a chroot on a copy of a
provisioned box: the replica role writes primary_conninfo and standby.signal,
keeps the password out of the configuration, and its verify step passes."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.provisioning import rootfs
from tests.provisioning.conftest import Applied

pytestmark = pytest.mark.slow

PASSWORD = "replica-secret-0123456789"
REPLICA_VARS = {
    "postgresql_replica_primary_host": "10.20.0.10",
    "postgresql_replica_password": PASSWORD,
    "postgresql_replica_slot": "citadel_replica",
    "hardening_firewall_ssh_networks": ["10.20.0.0/16"],
}


def test_replica_renders_primary_conninfo_and_standby_signal(
        chroot_applied: object, appliance_root: Path, provision_workspace: Path,
        apply: Callable[..., Applied]) -> None:
    with rootfs.overlay([appliance_root], provision_workspace / "replica") as replica:
        rendered = apply(replica, group="citadel_replica", extra=REPLICA_VARS,
                         label="replica render")
        assert rendered.result.succeeded, rendered.result.failures

        settings = (replica / "etc/postgresql/15/main/conf.d/60-citadel-replica.conf").read_text()
        assert ("primary_conninfo = 'host=10.20.0.10 port=5432 user=replicator "
                "passfile=/var/lib/postgresql/.pgpass sslmode=require "
                "application_name=appliance'") in settings
        assert "primary_slot_name = 'citadel_replica'" in settings
        assert PASSWORD not in settings
        signal = replica / "var/lib/postgresql/15/main/standby.signal"
        assert signal.exists()
        passfile = replica / "var/lib/postgresql/.pgpass"
        assert passfile.read_text().strip() == f"10.20.0.10:5432:replication:replicator:{PASSWORD}"
        assert stat.S_IMODE(passfile.stat().st_mode) == 0o600

        again = apply(replica, group="citadel_replica", extra=REPLICA_VARS,
                      label="replica re-render")
        assert again.result.succeeded and again.result.changed == 0, again.result.failures


def test_replica_refuses_a_missing_primary(chroot_applied: object, appliance_root: Path,
                                           provision_workspace: Path,
                                           apply: Callable[..., Applied]) -> None:
    with rootfs.overlay([appliance_root], provision_workspace / "replica-bad") as replica:
        rendered = apply(replica, group="citadel_replica",
                         extra={**REPLICA_VARS, "postgresql_replica_primary_host": ""},
                         tags=("postgresql_replica",), label="replica without primary")
        assert not rendered.result.succeeded
        assert any("a replica needs postgresql_replica_primary_host" in f.message
                   for f in rendered.result.failures)
