"""Measure a command's whole process tree: wall time, CPU time and peak memory, by role.

``measure(cmd)`` runs ``cmd`` as a child of this process after making this process a *child
subreaper* (Linux ``prctl(PR_SET_CHILD_SUBREAPER)``), so every process the command starts, even
daemons it detaches (``flwr run``'s background SuperLink, Ray's raylet and workers), stays in
this process's tree and is reaped here. Then

- CPU time = the larger of two lower bounds: the growth of ``getrusage(RUSAGE_CHILDREN)``
  (user + system seconds of every descendant whose usage reached us through the chain of
  ``wait``s; a parent that reaps without collecting, as Ray's raylet sometimes does for its
  workers, loses it) and the sum of each process's own CPU time read from ``/proc/<pid>/stat``
  at its last sample (misses at most its last ``interval``);
- per-process peak memory = the last ``VmHWM`` (the kernel's peak resident set, bytes) read
  from ``/proc/<pid>/status`` before the process exits, sampled every ``interval`` s;
- tree peak memory = the largest sum of ``VmRSS`` over all descendants at one sample.

Processes are put in roles by their command line (``ROLES``): ``driver`` (the process running
the ServerApp: ``flwr-simulation``, or the plain loop itself), ``actor`` (Ray workers that run
ClientApps), ``flower`` (``flwr`` CLI, SuperLink, SuperExec), ``ray`` (Ray's services).
Linux only (reads ``/proc``).
"""

from __future__ import annotations

import ctypes
import os
import resource
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")

#: role -> command-line substrings (first match wins, in this order)
ROLES: list[tuple[str, tuple[str, ...]]] = [
    ("ray", ("raylet", "gcs_server")),
    ("driver", ("flwr-simulation", "benchmarks.plain_loop", "benchmarks/plain_loop")),
    ("actor", ("ClientAppActor", "default_worker.py", "ray::IDLE")),
    ("flower", ("flower-superlink", "flower-superexec", "flwr run", "bin/flwr", "server.simulate")),
    ("ray", ("ray/", "ray::", "gcs_server", "raylet")),
]


def become_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process (Linux); False if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def _children_map() -> dict[int, list[int]]:
    """ppid -> child pids, for every live process visible in /proc (zombies - exited, waiting
    for their parent to reap them, e.g. a kept SuperExec's finished ``flwr-simulation`` - hold
    nothing and are left out)."""
    out: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        stat = _read(Path(entry.path) / "stat")
        if not stat:
            continue
        # pid (comm) state ppid ...; comm may hold spaces and parentheses
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] == "Z":
            continue
        out.setdefault(int(fields[1]), []).append(int(entry.name))
    return out


def descendants(root: int) -> list[int]:
    """Every live descendant of ``root`` (not ``root`` itself)."""
    kids, out, todo = _children_map(), [], [root]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def role_of(cmdline: str) -> str:
    for role, keys in ROLES:
        if any(k in cmdline for k in keys):
            return role
    return "other"


@dataclass
class ProcInfo:
    pid: int
    cmdline: str
    role: str
    peak_bytes: int = 0  # VmHWM
    rss_bytes: int = 0  # last VmRSS
    first_seen_s: float = 0.0  # since the command started
    last_seen_s: float = 0.0
    cpu_s: float = 0.0  # user + system CPU of this process (not its children), last sample
    #                     (for a process already running when the command started: since then)
    preexisting: bool = False  # already running when the command started (a kept deployment)
    cpu_base: float = 0.0  # its CPU time when first seen


@dataclass
class Measurement:
    """What one command cost. Times in seconds, memory in bytes."""

    returncode: int
    wall_s: float
    cpu_s: float  # max of the two lower bounds below
    tree_peak_bytes: int
    procs: dict[int, ProcInfo] = field(default_factory=dict)
    leftover: list[int] = field(default_factory=list)
    cpu_rusage_s: float = 0.0  # RUSAGE_CHILDREN growth: loses processes reaped by a parent
    #                            that discards their usage (Ray's raylet, sometimes)
    cpu_sampled_s: float = 0.0  # sum of each process's last sampled CPU: misses <= interval
    started_at: float = 0.0  # time.time() when the command was started

    def role_peak(self, role: str) -> int:
        """Largest single-process peak (VmHWM) among processes of ``role`` (0 if none)."""
        return max((p.peak_bytes for p in self.procs.values() if p.role == role), default=0)

    def role_count(self, role: str) -> int:
        return sum(1 for p in self.procs.values() if p.role == role)

    def timeline(self) -> list[dict]:
        """Every process seen: role, peak MiB, CPU s, first/last seen (s), command (shortened)."""
        return [{"pid": p.pid, "role": p.role, "peak_mib": round(p.peak_bytes / 2**20, 1),
                 "cpu_s": round(p.cpu_s, 2), "preexisting": p.preexisting,
                 "first_s": round(p.first_seen_s, 2),
                 "last_s": round(p.last_seen_s, 2),
                 "cmd": p.cmdline[:160]}
                for p in sorted(self.procs.values(), key=lambda p: p.first_seen_s)]

    def summary(self) -> dict:
        roles = sorted({p.role for p in self.procs.values()})
        return {"returncode": self.returncode, "wall_s": self.wall_s, "cpu_s": self.cpu_s,
                "started_at": self.started_at,
                "cpu_rusage_s": self.cpu_rusage_s, "cpu_sampled_s": self.cpu_sampled_s,
                "tree_peak_bytes": self.tree_peak_bytes,
                "roles": {r: {"processes": self.role_count(r), "peak_bytes": self.role_peak(r),
                              "cpu_s": sum(p.cpu_s for p in self.procs.values() if p.role == r)}
                          for r in roles},
                "leftover_processes": len(self.leftover), "timeline": self.timeline()}


def self_status_bytes(field: str) -> int:
    """A /proc/self/status field (VmRSS, VmHWM, ...) of this process in bytes; 0 where absent."""
    return _status_bytes(_read(Path("/proc/self/status")) or "", field + ":")


def reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS; False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status_bytes(text: str, key: str) -> int:
    for line in text.splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    return 0


def measure(cmd: list[str], env: dict[str, str] | None = None, cwd: str | Path | None = None,
            interval: float = 0.1, log_path: Path | None = None, timeout: float = 3600.0
            ) -> Measurement:
    """Run ``cmd`` to completion and measure its process tree (see the module docstring)."""
    if not become_subreaper():
        raise RuntimeError("procmon needs Linux prctl(PR_SET_CHILD_SUBREAPER)")
    me = os.getpid()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # processes already in this tree (a deployment a previous command left up): their memory
    # counts, their CPU from now on; the command is not waited for them to exit
    pre = set(descendants(me))
    procs: dict[int, ProcInfo] = {}
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        total = 0
        for pid in descendants(me):
            base = Path(f"/proc/{pid}")
            status = _read(base / "status")
            if status is None:
                continue
            info = procs.get(pid)
            if info is None:
                raw = _read(base / "cmdline") or ""
                cmdline = raw.replace("\0", " ").strip()
                if not cmdline:  # a zombie or a kernel-less stub: nothing to measure
                    continue
                info = procs[pid] = ProcInfo(pid, cmdline, role_of(cmdline),
                                             first_seen_s=time.perf_counter() - t0,
                                             preexisting=pid in pre)
            elif info.role in ("ray", "other") and "ClientAppActor" not in info.cmdline:
                # Ray renames a worker once it becomes an actor: re-read
                raw = (_read(base / "cmdline") or "").replace("\0", " ").strip()
                if raw and role_of(raw) != info.role:
                    info.cmdline, info.role = raw, role_of(raw)
            stat = _read(base / "stat")
            if stat:
                fields = stat[stat.rindex(")") + 2:].split()
                total_cpu = (int(fields[11]) + int(fields[12])) / TICKS
                if info.preexisting and info.cpu_base == 0.0:
                    info.cpu_base = total_cpu or 1e-9
                info.cpu_s = max(info.cpu_s, total_cpu - info.cpu_base)
            rss = _status_bytes(status, "VmRSS:")
            info.rss_bytes = rss
            info.last_seen_s = time.perf_counter() - t0
            info.peak_bytes = max(info.peak_bytes, _status_bytes(status, "VmHWM:"))
            total += rss
        peak = max(peak, total)

    def sampler() -> None:
        while not stop.is_set():
            sample()
            stop.wait(interval)

    out = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115
    t0, started_at = time.perf_counter(), time.time()
    thread = threading.Thread(target=sampler, daemon=True)
    try:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        thread.start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        wall = time.perf_counter() - t0
        # Reap what the command left behind (re-parented here); give daemons a moment to exit.
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline:
            _reap()
            if not set(descendants(me)) - pre:
                break
            time.sleep(0.1)
        leftover = sorted(set(descendants(me)) - pre)
    finally:
        stop.set()
        thread.join()
        if log_path:
            out.close()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    sampled = sum(p.cpu_s for p in procs.values())
    return Measurement(rc, wall, max(cpu, sampled), peak, procs, leftover, cpu, sampled,
                       started_at)


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
