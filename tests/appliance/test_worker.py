"""The worker: jobs on intervals, failures isolated, heartbeat for /healthz, sealed waits."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import func, select

import audit
from appliance import keys
from appliance.cli import main
from appliance.worker import Job, Worker, last_heartbeat
from audit.models import Checkpoint


def test_a_failing_job_never_stops_the_others(appliance):
    ran = []

    def boom(_app):
        raise RuntimeError("disk on fire")

    worker = Worker(appliance, [Job("boom", 60, boom), Job("fine", 60, lambda a: ran.append(1))])
    assert worker.run_due() == ["boom", "fine"]
    assert ran == [1] and worker.jobs[0].failures == 1
    assert worker.run_due() == []  # not due again yet
    assert last_heartbeat(appliance.data_dir) is not None


def test_jobs_that_need_keys_wait_while_sealed(appliance):
    ran = []
    worker = Worker(appliance, [Job("needs keys", 1, lambda a: ran.append(1), needs_keys=True)])
    keys.seal_now(appliance.data_dir)
    try:
        assert worker.run_due() == [] and ran == []
    finally:
        keys.auto_unseal_demo(appliance.data_dir)
    assert worker.run_due() == ["needs keys"]


def test_worker_once_signs_a_checkpoint_and_health_sees_it(appliance, app, data_dir):
    with appliance.session() as db:
        audit.record(db, "login", user="alice")
    result = CliRunner().invoke(main, ["worker", "--once", "--data-dir", str(data_dir)],
                                env={"CITADEL_AUDIT__CHECKPOINT_EVERY": "1"})
    assert result.exit_code == 0, result.output
    assert "ran audit checkpoint" in result.output
    with appliance.session() as db:
        assert db.scalar(select(func.count()).select_from(Checkpoint)) >= 1
    health = app.test_client().get("/healthz").json
    assert health["checks"]["worker"] == "ok" and health["checks"]["keys"] == "ok"


def test_a_box_without_keys_serves_its_sealed_page(tmp_path, database_url):
    """Right after `appliance init` (no key ceremony yet) the app starts and says what to do."""
    from appliance.app import create_app
    from appliance.kernel.config import write_initial
    from appliance.kernel.runtime import Appliance

    write_initial(tmp_path / "fresh", {"database_url": database_url})
    fresh = Appliance.open(tmp_path / "fresh")
    client = create_app(fresh).test_client()
    page = client.get("/login")
    assert page.status_code == 503 and "appliance keys init" in page.get_data(as_text=True)
    assert client.get("/healthz").json["checks"]["keys"] == "sealed"
    fresh.dispose()
