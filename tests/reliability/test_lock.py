"""The run-directory lock: a live owner is refused in one line (exit 2), a stale lock is taken over with a
message, and the lock goes away when training ends, normally or not."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from reliability_helpers import TINY, single_error_line

from resnetlab.cli import main
from resnetlab.errors import UserError
from resnetlab.train.lock import LOCK_FILE, Owner, acquire_run_lock, read_owner, run_lock


def write_lock(run_dir, pid: int, host: str | None = None, start_ticks: int | None = None) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    owner = {"pid": pid, "host": host or socket.gethostname(), "started": "2024-01-02T03:04:05+0000",
             "start_ticks": start_ticks}
    (run_dir / LOCK_FILE).write_text(json.dumps(owner))


@pytest.fixture
def live_process():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


@pytest.fixture
def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()  # reaped: the pid belongs to no process now
    return process.pid


def test_live_owner_is_refused_by_the_cli(tiny_data, tmp_path, live_process, capsys):
    run = tmp_path / "run"
    write_lock(run, live_process.pid)
    before = (run / LOCK_FILE).read_text()
    assert main(["train", "--data", str(tiny_data), "--out", str(run), "--epochs", "1", *TINY]) == 2
    line = single_error_line(capsys.readouterr().err)
    assert f"run directory {run} is in use by pid {live_process.pid} (started 2024-01-02T03:04:05+0000)" in line
    assert (run / LOCK_FILE).read_text() == before and not (run / "checkpoints").exists()


def test_stale_lock_is_taken_over_with_a_message(tiny_data, tmp_path, dead_pid, capsys):
    run = tmp_path / "run"
    write_lock(run, dead_pid)
    assert main(["train", "--data", str(tiny_data), "--out", str(run), "--epochs", "1", *TINY]) == 0
    out = capsys.readouterr().out
    assert f"taking over the stale lock of {run}: pid {dead_pid}" in out and "no longer running" in out
    assert not (run / LOCK_FILE).exists()  # released at the end


def test_a_reused_pid_does_not_keep_a_lock_alive(tmp_path):
    me = Owner.me()
    write_lock(tmp_path, me.pid, start_ticks=(me.start_ticks or 0) + 12345)  # our pid, another process's start
    messages = []
    with run_lock(tmp_path, messages.append):
        assert read_owner(tmp_path / LOCK_FILE) == me
    assert "no longer running" in messages[0]


def test_second_lock_in_the_same_process_is_refused(tmp_path):
    with run_lock(tmp_path, print), pytest.raises(UserError, match=rf"in use by pid {os.getpid()}"):
        acquire_run_lock(tmp_path)
    assert not (tmp_path / LOCK_FILE).exists()


def test_lock_from_another_host_is_refused_with_the_way_out(tmp_path):
    write_lock(tmp_path, 1, host="elsewhere.example")
    with pytest.raises(UserError, match=rf"locked by pid 1 on host elsewhere\.example .* delete {tmp_path / LOCK_FILE}"):
        acquire_run_lock(tmp_path)


def test_empty_lock_left_by_a_kill_at_creation_is_taken_over(tmp_path):
    (tmp_path / LOCK_FILE).write_text("")
    old = time.time() - 60
    os.utime(tmp_path / LOCK_FILE, (old, old))
    messages = []
    with run_lock(tmp_path, messages.append):
        assert read_owner(tmp_path / LOCK_FILE).pid == os.getpid()
    assert "unreadable lock file" in messages[0]


def test_lock_released_on_exceptions(tmp_path):
    with pytest.raises(RuntimeError), run_lock(tmp_path / "run", print):
        raise RuntimeError("boom")
    assert not (tmp_path / "run").exists()  # created for the lock, left empty: removed with it


def test_failed_start_leaves_no_run_directory(tiny_data, tmp_path, capsys):
    """A run that fails in setup (here: the batch is larger than the training split) leaves nothing behind."""
    run = tmp_path / "runs" / "new"
    argv = ["train", "--data", str(tiny_data), "--out", str(run), "--epochs", "1", *TINY, "--batch-size", "500"]
    assert main(argv) == 2
    assert "batch size 500 is larger" in single_error_line(capsys.readouterr().err)
    assert not (tmp_path / "runs").exists()
