"""One live training run per run directory: ``run_dir/.lock`` names its owner (pid, host, start time).

Two runs writing checkpoints into one directory would prune and overwrite each other's files, and a new run
cleans the temporary directories that killed writes leave behind -- which, for a live run, are its writes in
progress. So ``fit`` holds the lock from before it touches the directory until it returns or raises.

The lock file is created with ``O_CREAT | O_EXCL``: of two runs started together exactly one gets it. A lock
whose process no longer runs on this host (killed, crashed, machine rebooted) is stale and the next run takes
it over, saying so. The owner's start time (from ``/proc``) is kept too, so that a pid reused by an unrelated
process does not look like the owner. A lock written on another host cannot be checked from here: it is
refused, and the message says how to remove it by hand.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from resnetlab.errors import UserError

LOCK_FILE = ".lock"
_UNREADABLE_GRACE_S = 2.0  # a lock file this young may be one whose owner has not written its content yet


@dataclass(frozen=True)
class Owner:
    """Who holds a lock, as written into the lock file."""

    pid: int
    host: str
    started: str  # local time, ISO 8601, for messages
    start_ticks: int | None = None  # the process's start time after boot (/proc/<pid>/stat), None off Linux

    @classmethod
    def me(cls) -> Owner:
        stat = _proc_stat(os.getpid())
        return cls(os.getpid(), socket.gethostname(), time.strftime("%Y-%m-%dT%H:%M:%S%z"), stat[1] if stat else None)


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks after boot) of a process, or None without /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
    return fields[0], int(fields[19])  # fields 3 (state) and 22 (starttime) of proc(5)


def is_running(owner: Owner) -> bool:
    """Whether the owner's process still runs on this host (a zombie or a reused pid does not count)."""
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    stat = _proc_stat(owner.pid)
    if stat is None:
        return not Path("/proc/self/stat").exists()  # no /proc at all: trust kill(pid, 0)
    state, ticks = stat
    return state not in ("Z", "X") and (owner.start_ticks is None or ticks == owner.start_ticks)


def read_owner(path: Path) -> Owner | None:
    """The owner recorded in a lock file; None when the file is empty or not a lock (a torn write)."""
    try:
        data = json.loads(path.read_text())
        owner = Owner(int(data["pid"]), str(data["host"]), str(data["started"]),
                      None if data.get("start_ticks") is None else int(data["start_ticks"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return owner if owner.pid > 0 else None


class RunLock:
    """A held lock; ``release`` removes the lock file (if still ours) and any run directory it created empty."""

    def __init__(self, path: Path, text: str, created: list[Path]) -> None:
        self.path, self.text, self.created = path, text, created

    def release(self) -> None:
        try:
            if self.path.read_text() == self.text:
                self.path.unlink()
        except OSError:
            pass
        for folder in self.created:  # deepest first; stops at the first one that holds something
            try:
                folder.rmdir()
            except OSError:
                break


def acquire_run_lock(run_dir: str | Path, log: Callable[[str], None] = print) -> RunLock:
    """Create ``run_dir/.lock`` for this process, taking over a stale one; a live owner raises UserError."""
    run_dir = Path(run_dir)
    created = [folder for folder in (run_dir, *run_dir.parents) if not folder.exists()]
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    text = json.dumps(asdict(Owner.me())) + "\n"
    for _ in range(5):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            _refuse_or_clear(run_dir, path, log)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        return RunLock(path, text, created)
    raise UserError(f"could not lock run directory {run_dir}: other runs keep taking {path}")


def _refuse_or_clear(run_dir: Path, path: Path, log: Callable[[str], None]) -> None:
    """Raise for a live (or unverifiable) owner; remove a stale lock file, saying whose it was."""
    owner = read_owner(path)
    deadline = time.monotonic() + _UNREADABLE_GRACE_S
    while owner is None and _age(path) < _UNREADABLE_GRACE_S and time.monotonic() < deadline:
        time.sleep(0.05)  # created an instant ago: its owner may be writing it right now
        owner = read_owner(path)
    if owner is None:
        if path.exists():
            log(f"taking over the unreadable lock file {path} (left by a run killed as it started)")
    elif owner.host != socket.gethostname():
        raise UserError(f"run directory {run_dir} is locked by pid {owner.pid} on host {owner.host} (started "
                        f"{owner.started}); if that run is gone, delete {path}")
    elif is_running(owner):
        raise UserError(f"run directory {run_dir} is in use by pid {owner.pid} (started {owner.started}); "
                        "wait for it to finish, stop it, or choose another --out")
    else:
        log(f"taking over the stale lock of {run_dir}: pid {owner.pid} (started {owner.started}) is no longer "
            "running")
    try:
        path.unlink()
    except FileNotFoundError:
        pass  # another starting run removed it first; the O_EXCL create decides between us


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return float("inf")


@contextmanager
def run_lock(run_dir: str | Path, log: Callable[[str], None] = print) -> Iterator[RunLock]:
    """Hold the run directory's lock for the body of a ``with`` block, released on exceptions too."""
    lock = acquire_run_lock(run_dir, log)
    try:
        yield lock
    finally:
        lock.release()
