"""Backups taken one after another while the appliance is broken at random.

Each run is ``appliance backup run --no-prune`` in its own process group. A run
that exits 0 names its archive; a run killed or failing names none. Afterwards
``check`` holds the catalogue to what happened: only archives whose run
completed may be listed as good (or one killed after its drill was recorded, which
must then verify again in full), and the newest good one must restore.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.verify.stack import Stack

ARCHIVE = re.compile(r"archive (\S+): (\w+);")


@dataclass
class BackupLoop:
    stack: Stack
    log: Path
    completed: dict[str, str] = field(default_factory=dict)  # archive id -> status printed
    killed: int = 0
    failed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)  # why runs failed (last line)
    runs: int = 0
    current: subprocess.Popen[bytes] | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> BackupLoop:
        self.thread = threading.Thread(target=self._loop, daemon=True, name="backups")
        self.thread.start()
        return self

    def _loop(self) -> None:
        while not self.stopping.is_set():
            self.run_once()
            self.stopping.wait(0.5)

    def run_once(self) -> int:
        """One ``backup run`` to its end (or its death); returns its exit code."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        self.current = self.stack.cli_process("backup", "run", "--no-prune", log=self.log)
        code = self.current.wait()
        self.runs += 1
        output = self.log.read_bytes()[offset:].decode(errors="replace")
        found = ARCHIVE.search(output)
        if code == 0 and found:
            self.completed[found.group(1)] = found.group(2)
        elif code < 0:
            self.killed += 1
        else:
            self.failed += 1
            last = [ln for ln in output.splitlines() if ln.strip()][-1:] or ["(no output)"]
            self.reasons[re.sub(r"[0-9a-f]{8,}|\d{8}T\d{6}Z\S*", "…", last[0])[:160]] += 1
        return code

    def kill(self) -> bool:
        """SIGKILL the running backup's whole process group; False when none was running."""
        proc = self.current
        if proc is None or proc.poll() is not None:
            return False
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        return True

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=600)


def listed(stack: Stack) -> list[dict[str, object]]:
    result = stack.cli("backup", "list", "--json")
    if result.returncode != 0:
        raise AssertionError(f"backup list failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


def check(stack: Stack, loop: BackupLoop, restore_url: str) -> tuple[list[str], dict[str, object]]:
    """(problems, figures): nothing good that did not complete; the newest good one restores."""
    problems: list[str] = []
    rows = listed(stack)
    good = [r for r in rows if r["good"]]
    cut_short = 0
    for row in good:
        if row["archive_id"] in loop.completed:
            continue
        # killed between recording its drill and printing its name: good only if whole
        checked = stack.cli("backup", "verify", str(row["archive_id"]))
        if checked.returncode == 0:
            cut_short += 1
        else:
            problems.append(f"archive {row['archive_id']} is listed as good ({row['status']}) "
                            f"but its run never completed and it does not verify: "
                            f"{(checked.stdout + checked.stderr).strip()[-300:]}")
    figures: dict[str, object] = {"runs": loop.runs, "completed": len(loop.completed),
                                  "good though killed after their drill (verified again)":
                                  cut_short,
                                  "killed": loop.killed, "failed": loop.failed,
                                  "listed good": len(good), "listed other": len(rows) - len(good),
                                  "failure reasons": dict(loop.reasons.most_common(3))}
    if not good:
        problems.append("no good archive to restore")
        return problems, figures
    newest = max(good, key=lambda r: str(r["archive_id"]))
    restored = stack.cli("backup", "restore", str(newest["archive_id"]), "--to", restore_url)
    if restored.returncode != 0:
        problems.append(f"restoring {newest['archive_id']} failed: {restored.stderr.strip()[-500:]}")
    else:
        rto = re.search(r"RTO: ([\d.]+) s", restored.stdout)
        figures["restore s"] = float(rto.group(1)) if rto else None
    return problems, figures
