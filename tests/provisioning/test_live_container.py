"""The provisioned root booted as a container (private network) and the
playbook applied live inside it: services really start, handlers really run,
and the appliance works — PostgreSQL, the sandboxed app behind nginx over
HTTPS, /healthz, the worker and a backup job."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.provisioning import rootfs
from tests.provisioning.conftest import Applied

pytestmark = pytest.mark.slow

APPLIANCE = "/opt/citadel/venv/bin/appliance"
REPO = Path(__file__).resolve().parents[2]


def _command_exists(*words: str) -> bool:
    """Whether the checkout's ``appliance`` CLI has this (sub)command."""
    from click.testing import CliRunner

    from appliance.cli import main

    result = CliRunner().invoke(main, [*words, "--help"])
    return result.exit_code == 0


HAS_WORKER = _command_exists("worker")
HAS_BACKUP = _command_exists("backup", "run")


@pytest.fixture(scope="module")
def container(chroot_applied: tuple[Applied, Applied], appliance_root: Path,
              provision_workspace: Path) -> Iterator[rootfs.Container]:
    first, _ = chroot_applied
    if not first.result.succeeded:
        pytest.fail(f"the chroot apply failed, nothing to boot: {first.result.failures}")
    rootfs.allow_services(appliance_root)
    with rootfs.booted(appliance_root, provision_workspace / "container") as booted:
        yield booted


@dataclass
class Live:
    """The live runs inside the container, and what the box served in between."""

    first: Applied
    second: Applied
    sealed_page: dict[str, object]


@pytest.fixture(scope="module")
def live(container: rootfs.Container, appliance_root: Path,
         apply: Callable[..., Applied]) -> Live:
    """Provision live, hold the officers' key ceremony, provision again and verify.

    A new appliance stays sealed until its officers create and unseal the keys
    (provisioning never holds them), so the first run leaves verify out; the
    second run must change nothing and runs every verify step.
    """
    extra = {"citadel_worker_enabled": HAS_WORKER}
    first = apply(appliance_root, live=True, chroot_exe=container.chroot_exe, extra=extra,
                  skip_tags=("verify",), label="live apply")
    if not first.result.succeeded:
        _diagnose(container)
        return Live(first, first, {})
    sealed_page = _fetch(container, "https://127.0.0.1/")
    _key_ceremony(container)
    second = apply(appliance_root, live=True, chroot_exe=container.chroot_exe, extra=extra,
                   label="live re-apply with verify")
    if not second.result.succeeded:
        _diagnose(container)
    return Live(first, second, sealed_page)


def _diagnose(container: rootfs.Container) -> None:
    for command in (["systemctl", "--failed", "--no-pager"],
                    ["journalctl", "--no-pager", "-n", "60", "-u", "citadel-web.service"]):
        shown = container.run(*command, check=False)
        print(f"[provision] {' '.join(command)}:\n{shown.stdout}{shown.stderr}")


def _as_citadel(container: rootfs.Container, *args: str, input: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the appliance's command line as its account, as an operator would."""
    return container.run("runuser", "-u", "citadel", "--", "env",
                         "CITADEL_DATA_DIR=/var/lib/citadel", APPLIANCE, *args,
                         input=input, check=check, timeout=300)


def _key_ceremony(container: rootfs.Container) -> None:
    """Create the keys with one share holder, then unseal with that share."""
    passphrase = "provisioning test holder passphrase"
    created = _as_citadel(container, "keys", "init", "--threshold", "1", "--holder", "officer",
                          "--share-dir", "/var/lib/citadel/keys/test-shares",
                          input=f"{passphrase}\n{passphrase}\n")
    share = created.stdout.split("Share files:", 1)[1].split(",")[0].strip()
    _as_citadel(container, "keys", "unseal", "--share", share, input=f"{passphrase}\n")


def _fetch(container: rootfs.Container, url: str) -> dict[str, object]:
    """GET ``url`` from inside the container (its loopback), self-signed TLS accepted."""
    script = (
        "import json, ssl, sys, urllib.request, urllib.error\n"
        "ctx = ssl.create_default_context(); ctx.check_hostname = False\n"
        "ctx.verify_mode = ssl.CERT_NONE\n"
        "try:\n"
        "    r = urllib.request.urlopen(sys.argv[1], context=ctx, timeout=20)\n"
        "except urllib.error.HTTPError as e:\n"
        "    r = e\n"
        "print(json.dumps({'status': r.status, 'url': r.url, 'headers': dict(r.headers),\n"
        "                  'body': r.read().decode()}))\n"
    )
    answer = container.run("python3", "-c", script, url)
    return json.loads(answer.stdout)


def test_live_apply_succeeds(live: Live) -> None:
    assert live.first.result.succeeded, live.first.result.failures
    assert live.first.result.changed > 0


def test_live_reapply_verifies_and_changes_nothing(live: Live) -> None:
    second = live.second
    assert second.result.succeeded, second.result.failures
    assert {h.host: h.changed for h in second.result.hosts.values()} == {"appliance": 0}


def test_postgresql_runs_with_scram_and_the_app_database(
        live: Live, container: rootfs.Container) -> None:
    query = ("SELECT current_setting('password_encryption'), "
             "(SELECT rolsuper FROM pg_roles WHERE rolname = 'citadel'), "
             "(SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'citadel')")
    answer = container.run("runuser", "-u", "postgres", "--", "psql", "-tAc", query)
    assert answer.stdout.strip() == "scram-sha-256|f|citadel"
    # Anyone but the application's account is turned away from its database.
    refused = container.run("runuser", "-u", "nobody", "--", "psql", "-h", "/run/postgresql",
                            "-U", "citadel", "citadel", "-c", "SELECT 1", check=False)
    assert refused.returncode != 0


def test_application_units_are_active_and_sandboxed(live: Live,
                                                    container: rootfs.Container) -> None:
    active = container.run("systemctl", "is-active", "citadel-web.service", "nginx.service",
                           "postgresql@15-main.service", "nftables.service", "ssh.service",
                           "rsyslog.service", check=False)
    assert active.stdout.split() == ["active"] * 6, active.stdout
    shown = container.run("systemctl", "show", "citadel-web.service", "--property",
                          "NoNewPrivileges,ProtectSystem,PrivateTmp,CapabilityBoundingSet,User")
    properties = dict(line.split("=", 1) for line in shown.stdout.splitlines())
    assert properties == {"NoNewPrivileges": "yes", "ProtectSystem": "strict",
                          "PrivateTmp": "yes", "CapabilityBoundingSet": "", "User": "citadel"}


def test_a_fresh_box_stays_sealed_until_its_officers_unseal_it(live: Live) -> None:
    page = live.sealed_page
    assert page["status"] == 503
    assert "sealed" in str(page["body"]).lower()


def test_nginx_answers_https_with_the_login_page(live: Live,
                                                  container: rootfs.Container) -> None:
    page = _fetch(container, "https://127.0.0.1/")
    assert page["status"] == 200
    assert str(page["url"]).startswith("https://127.0.0.1/login")
    assert 'type="password"' in str(page["body"])
    headers = {k.lower(): v for k, v in dict(page["headers"]).items()}  # type: ignore[arg-type]
    assert headers["strict-transport-security"] == "max-age=63072000; includeSubDomains"
    assert "default-src" in headers["content-security-policy"]
    assert "server" not in headers or "nginx/" not in headers["server"]


def test_healthz_reports_healthy_through_nginx(live: Live,
                                               container: rootfs.Container) -> None:
    health = _fetch(container, "https://127.0.0.1/healthz")
    assert health["status"] == 200
    assert json.loads(str(health["body"]))["status"] == "ok"


def test_gunicorn_is_not_reachable_from_outside_loopback(live: Live,
                                                         container: rootfs.Container) -> None:
    listening = container.run("python3", "-c", (
        "import pathlib\n"
        "for line in pathlib.Path('/proc/net/tcp').read_text().splitlines()[1:]:\n"
        "    local, state = line.split()[1], line.split()[3]\n"
        "    if state == '0A': print(local)\n")).stdout.split()
    assert "0100007F:1F40" in listening  # 127.0.0.1:8000
    assert not any(entry.endswith(":1F40") and entry != "0100007F:1F40" for entry in listening)


def test_firewall_in_force_drops_by_default(live: Live,
                                            container: rootfs.Container) -> None:
    chain = container.run("nft", "list", "chain", "inet", "citadel_filter", "input").stdout
    assert "policy drop;" in chain
    assert "tcp dport 443 accept" in chain and "tcp dport 22 accept" in chain


def test_audit_anchor_is_append_only_where_supported(live: Live,
                                                     container: rootfs.Container) -> None:
    anchor = "/var/lib/citadel/audit/anchor.log"
    attributes = container.run("lsattr", "-d", anchor, check=False)
    if attributes.returncode != 0:
        pytest.skip(f"this filesystem has no file attributes: {attributes.stderr.strip()}")
    assert "a" in attributes.stdout.split()[0]
    rewrite = container.run("sh", "-c", f": > {anchor}", check=False)
    assert rewrite.returncode != 0  # not even root may truncate it


@pytest.mark.skipif(not HAS_WORKER, reason="`appliance worker` does not exist in this checkout yet")
def test_worker_runs(live: Live, container: rootfs.Container) -> None:
    active = container.run("systemctl", "is-active", "citadel-worker.service", check=False)
    assert active.stdout.strip() == "active"


@pytest.mark.skipif(not HAS_BACKUP,
                    reason="`appliance backup run` does not exist in this checkout yet")
def test_a_backup_job_succeeds(live: Live, container: rootfs.Container) -> None:
    job = _as_citadel(container, "backup", "run", check=False)
    assert job.returncode == 0, job.stdout + job.stderr
    listing = _as_citadel(container, "backup", "list", "--json")
    assert json.loads(listing.stdout)

