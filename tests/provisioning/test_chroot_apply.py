"""The playbook applied for real to a Debian 12 root through a chroot: it
succeeds, changes nothing the second time, leaves the files, accounts, units
and firewall the roles promise, and its verify step fails on tampering."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from provisioning.cli import provision
from tests.provisioning import rootfs
from tests.provisioning.conftest import APPLIANCE_VARS, Applied

pytestmark = pytest.mark.slow


def _owner(root: Path, path: str) -> tuple[str, int]:
    """(owner name inside the root, permission bits) of a path in the root."""
    info = (root / path.lstrip("/")).stat()
    users = {int(line.split(":")[2]): line.split(":")[0]
             for line in (root / "etc/passwd").read_text().splitlines()}
    return users[info.st_uid], stat.S_IMODE(info.st_mode)


def test_first_apply_succeeds_and_changes_the_box(chroot_applied: tuple[Applied, Applied]) -> None:
    first, _ = chroot_applied
    assert first.result.succeeded, first.result.failures
    assert first.result.changed > 20


def test_second_apply_changes_nothing(chroot_applied: tuple[Applied, Applied]) -> None:
    _, second = chroot_applied
    assert second.result.succeeded, second.result.failures
    assert {h.host: h.changed for h in second.result.hosts.values()} == {"appliance": 0}


def test_application_account_and_files(chroot_applied: object, appliance_root: Path) -> None:
    passwd = {line.split(":")[0]: line.split(":")
              for line in (appliance_root / "etc/passwd").read_text().splitlines()}
    assert passwd["citadel"][5] == "/var/lib/citadel"
    assert passwd["citadel"][6] == "/usr/sbin/nologin"
    shadow = {line.split(":")[0]: line.split(":")[1]
              for line in (appliance_root / "etc/shadow").read_text().splitlines()}
    assert shadow["citadel"] == "!"  # no password can ever be used
    assert _owner(appliance_root, "/var/lib/citadel") == ("citadel", 0o700)
    assert _owner(appliance_root, "/var/lib/citadel/citadel.toml") == ("citadel", 0o600)
    assert _owner(appliance_root, "/var/lib/citadel/audit/anchor.log") == ("citadel", 0o600)
    assert _owner(appliance_root, "/var/backups/citadel") == ("citadel", 0o700)
    assert (appliance_root / "opt/citadel/venv/bin/appliance").exists()


def test_configuration_is_rendered_from_variables(chroot_applied: object,
                                                  appliance_root: Path) -> None:
    config = tomllib.loads((appliance_root / "var/lib/citadel/citadel.toml").read_text())
    assert config["database_url"] == "postgresql://citadel@/citadel?host=/run/postgresql"
    assert config["bind"] == "127.0.0.1:8000"
    assert config["trusted_proxies"] == 1
    assert config["session_idle_minutes"] == 20
    assert config["backup"]["schedule"] == "02:30"
    assert config["backup"]["keep"] == {"daily": 7, "weekly": 4}
    assert config["backup"]["targets"] == {"local": {"type": "local",
                                                     "path": "/var/backups/citadel"}}


def test_service_units_are_sandboxed_and_enabled(chroot_applied: object,
                                                 appliance_root: Path) -> None:
    wants = appliance_root / "etc/systemd/system/multi-user.target.wants"
    for unit, command in [("citadel-web.service", "serve --bind 127.0.0.1:8000"),
                          ("citadel-worker.service", "worker")]:
        text = (appliance_root / "etc/systemd/system" / unit).read_text()
        lines = set(text.splitlines())
        assert f"ExecStart=/opt/citadel/venv/bin/appliance {command}" in lines
        for directive in ["NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
                          "ReadWritePaths=/var/lib/citadel", "CapabilityBoundingSet=",
                          "SystemCallFilter=@system-service", "Restart=on-failure",
                          "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "User=citadel"]:
            assert directive in lines, f"{unit} lacks {directive}"
        assert (wants / unit).is_symlink()  # is_symlink: the link's target is inside the root
    for unit in ["nginx.service", "ssh.service", "nftables.service", "auditd.service",
                 "rsyslog.service", "postgresql@15-main.service", "pcscd.socket",
                 "apt-daily-upgrade.timer"]:
        links = [d / unit for d in (appliance_root / "etc/systemd/system").glob("*.wants")
                 if (d / unit).is_symlink()]
        assert links, f"{unit} is not enabled"


def test_ssh_sysctl_audit_and_upgrades(chroot_applied: object, appliance_root: Path) -> None:
    sshd = (appliance_root / "etc/ssh/sshd_config.d/10-citadel.conf").read_text().splitlines()
    assert {"PermitRootLogin no", "PasswordAuthentication no", "X11Forwarding no"} <= set(sshd)
    sysctl = (appliance_root / "etc/sysctl.d/90-citadel.conf").read_text().splitlines()
    assert {"kernel.kptr_restrict = 2", "net.ipv4.tcp_syncookies = 1"} <= set(sysctl)
    rules = (appliance_root / "etc/audit/rules.d/50-citadel.rules").read_text()
    assert "-w /var/lib/citadel -p wa -k citadel-data" in rules
    assert (appliance_root / "etc/audit/rules.d/99-citadel-finalize.rules").read_text().rstrip()\
        .endswith("-e 2")
    upgrades = (appliance_root / "etc/apt/apt.conf.d/20auto-upgrades").read_text()
    assert 'APT::Periodic::Unattended-Upgrade "1";' in upgrades


def test_firewall_opens_only_https_and_ssh_from_its_networks(chroot_applied: object,
                                                            appliance_root: Path) -> None:
    rules = (appliance_root / "etc/nftables.conf").read_text()
    assert "type filter hook input priority filter; policy drop;" in rules
    accepted = re.findall(r"^\s*(ip6?) saddr @(\w+) tcp dport (\d+) accept", rules, re.M)
    assert sorted(accepted) == [("ip", "https_v4", "443"), ("ip", "ssh_v4", "22"),
                                ("ip6", "https_v6", "443"), ("ip6", "ssh_v6", "22")]
    ssh_v4 = re.search(r"set ssh_v4 \{.*?elements = \{ (.*?) \}", rules, re.S)
    assert ssh_v4 is not None and ssh_v4.group(1) == "10.20.0.0/16"
    # nft itself accepts the file (a check run: nothing is loaded)
    subprocess.run(["chroot", str(appliance_root), "nft", "-c", "-f", "/etc/nftables.conf"],
                   check=True)


def test_postgresql_authentication_is_locked_down(chroot_applied: object,
                                                  appliance_root: Path) -> None:
    config = appliance_root / "etc/postgresql/15/main"
    hba = [line.split() for line in (config / "pg_hba.conf").read_text().splitlines()
           if line.strip() and not line.startswith("#")]
    methods = {word for line in hba for word in line}
    assert not methods & {"trust", "md5", "password", "ident"}
    assert hba[-1] == ["host", "all", "all", "::/0", "reject"]
    assert ["local", "citadel", "citadel", "peer", "map=citadel"] in hba
    assert ["local", "all", "citadel_drill", "peer", "map=citadel"] in hba
    settings = (config / "conf.d/50-citadel.conf").read_text()
    assert "password_encryption = 'scram-sha-256'" in settings
    assert _owner(appliance_root, "/etc/postgresql/15/main/pg_hba.conf") == ("postgres", 0o640)


def test_nginx_serves_tls_with_a_private_key(chroot_applied: object, appliance_root: Path) -> None:
    enabled = appliance_root / "etc/nginx/sites-enabled/citadel.conf"
    assert os.readlink(enabled) == "/etc/nginx/sites-available/citadel.conf"
    site = (appliance_root / "etc/nginx/sites-available/citadel.conf").read_text()
    assert "listen 443 ssl http2 default_server;" in site
    hsts = 'add_header Strict-Transport-Security "max-age=63072000; includeSubDomains" always;'
    assert hsts in site
    assert "proxy_pass http://citadel_app;" in site
    assert 'proxy_set_header X-Client-Cert-Subject "";' in site  # no PIV: never forwarded
    assert not os.path.lexists(appliance_root / "etc/nginx/sites-enabled/default")
    assert _owner(appliance_root, "/etc/nginx/tls/citadel.key") == ("root", 0o600)


def test_check_mode_through_the_cli_finds_nothing_to_change(
        chroot_applied: object, appliance_root: Path, provision_workspace: Path,
        citadel_wheel: Path, wheelhouse: Path) -> None:
    """`appliance provision --check` on a provisioned box: every verify passes, no change."""
    inventory = _inventory(provision_workspace / "check.yml", appliance_root, citadel_wheel,
                           wheelhouse)
    result = CliRunner().invoke(provision, ["--inventory", str(inventory), "--check"])
    assert result.exit_code == 0, result.output
    assert "TASK [hardening : Check the SSH policy]" in result.output
    assert "TASK [citadel : Check every unit is sandboxed]" in result.output
    summary = result.output[result.output.index("SUMMARY"):]
    assert "appliance" in summary and "changed=0 failed=0" in summary
    assert "Provisioning succeeded." in summary


OTHER_ROLES = ("hardening", "luks", "postgresql", "citadel", "nginx", "logforward")


def _verify_only(role: str) -> dict[str, tuple[str, ...]]:
    """Run one role's verify step: every verify task, minus the other roles'."""
    return {"tags": ("verify",), "skip_tags": tuple(r for r in OTHER_ROLES if r != role)}


@pytest.mark.parametrize(("role", "tamper", "finding", "repair_tag"), [
    ("hardening", "sshd", "sshd's effective configuration does not match the SSH policy", "ssh"),
    ("citadel", "config_mode", "citadel.toml must exist with owner citadel and mode 0600",
     "citadel_config"),
    ("postgresql", "hba_trust", "pg_hba.conf allows a weak method", "postgresql_auth"),
    ("nginx", "key_mode", "(root, 0600) must exist", "nginx_tls"),
], ids=["sshd-root-login", "config-world-readable", "hba-trust", "tls-key-readable"])
def test_verify_fails_on_a_finding_and_a_targeted_apply_repairs(
        chroot_applied: object, appliance_root: Path, apply: Callable[..., Applied],
        role: str, tamper: str, finding: str, repair_tag: str) -> None:
    TAMPERING[tamper](appliance_root)
    checked = apply(appliance_root, label=f"verify {role} after {tamper}", **_verify_only(role))
    assert not checked.result.succeeded
    assert any(finding in failure.message for failure in checked.result.failures), \
        checked.result.failures

    repaired = apply(appliance_root, tags=(repair_tag,), label=f"apply --tags {repair_tag}")
    assert repaired.result.succeeded and repaired.result.changed >= 1, repaired.result.failures
    again = apply(appliance_root, label=f"verify {role} again", **_verify_only(role))
    assert again.result.succeeded, again.result.failures


def _tamper_sshd(root: Path) -> None:
    dropin = root / "etc/ssh/sshd_config.d/10-citadel.conf"
    dropin.write_text(dropin.read_text().replace("PermitRootLogin no", "PermitRootLogin yes"))


def _tamper_hba(root: Path) -> None:
    hba = root / "etc/postgresql/15/main/pg_hba.conf"
    hba.write_text("local all all trust\n" + hba.read_text())


TAMPERING: dict[str, Callable[[Path], None]] = {
    "sshd": _tamper_sshd,
    "config_mode": lambda root: (root / "var/lib/citadel/citadel.toml").chmod(0o644),
    "hba_trust": _tamper_hba,
    "key_mode": lambda root: (root / "etc/nginx/tls/citadel.key").chmod(0o644),
}


def _inventory(path: Path, root: Path, wheel: Path, house: Path) -> Path:
    variables = {**APPLIANCE_VARS, "appliance_live": False, "citadel_wheel": str(wheel),
                 "citadel_wheelhouse": str(house),
                 "citadel_build_dir": str(path.parent / "build")}
    return rootfs.write_inventory(path, root, variables=variables)
