"""A secured local federation on Flower's deployment runtime: one SuperLink, N SuperNodes.

    python -m server.launch --num-supernodes 3 --run-config "num-server-rounds=3"

Loopback only (every process listens on 127.0.0.1). In order, the launcher

1. exports each client's partition and the public set to ``<work>/nodes/client-NNNN``
   (``fedfr export``), so a SuperNode opens only its own data;
2. creates a CA and a SuperLink certificate for 127.0.0.1/localhost (``server/certs.py``) and one
   ECDSA P-384 key pair per SuperNode;
3. starts ``flower-superlink`` with TLS, ``--enable-supernode-auth`` and a database (so
   registrations and runs survive a SuperLink restart), registers every SuperNode's public key
   (``flwr supernode register``), starts the N ``flower-supernode`` processes, each with
   ``--root-certificates``, its private key and its own ``--node-config`` (partition-id, data-dir,
   state-dir), and waits until all are online;
4. runs the app with ``flwr run . <connection> --stream`` against that SuperLink and streams its
   logs (SuperLink and SuperNode logs go to ``<work>/logs``; their warnings are echoed);
5. prints the report the ServerApp wrote (report.json, results.md in output-dir) and the
   per-round node table, and stops every process it started, by process group id, on exit,
   error or Ctrl-C.

``--insecure`` turns TLS and SuperNode authentication off (with a warning); never use it beyond
loopback. ``docs/deployment.md`` shows the same steps on real machines.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from fedfr.config import format_run_config, parse_run_config
from fedfr.errors import run_entry_point
from server.certs import make_ca_and_server_cert, make_node_key
from server.exit_status import clear_results
from server.simulate import checked_output_dir, flwr_executable, free_port, run_outcome

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
CONNECTION = "fedfr-local"
log = logging.getLogger("fedfr.launch")
_ECHO = re.compile(r"WARN|ERROR|Traceback|Exception|NodeDataError")


class LaunchError(RuntimeError):
    """A federation process failed to start or the federation did not come up in time."""


def _bin(name: str) -> str:
    exe = Path(sys.executable).with_name(name)
    return str(exe) if exe.exists() else name


def _toml_str(value: str) -> str:
    return json.dumps(str(value))


class Proc:
    """One started process (own session / process group), its log file and a reader thread."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_path: Path,
                 echo: Callable[[str, str], None] | None):
        self.name, self.cmd, self.log_path = name, cmd, log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: TextIO = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed in stop
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self.popen = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      text=True, errors="replace", start_new_session=True)
        self.pid = self.popen.pid
        self._thread = threading.Thread(target=self._pump, args=(echo,), daemon=True)
        self._thread.start()

    def _pump(self, echo: Callable[[str, str], None] | None) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._fh.write(line)
            self._fh.flush()
            with self._cond:
                self._lines.append(line)
                self._cond.notify_all()
            if echo is not None:
                echo(self.name, line.rstrip("\n"))
        with self._cond:
            self._cond.notify_all()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 60.0) -> bool:
        """Block until ``pattern`` (regex) has appeared in ``count`` output lines."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if sum(1 for ln in self._lines if rx.search(ln)) >= count:
                    return True
                left = deadline - time.monotonic()
                if left <= 0 or (self.popen.poll() is not None and not self._thread.is_alive()):
                    return False
                self._cond.wait(min(left, 0.5))

    def output(self) -> str:
        with self._cond:
            return "".join(self._lines)

    def stop(self, sig: int = signal.SIGTERM, grace: float = 10.0) -> int | None:
        """Signal the process group (the process and the apps it spawned); SIGKILL what is left
        after ``grace`` seconds, the leader's children included. Idempotent."""
        if self._fh.closed:
            return self.popen.returncode
        if self.popen.poll() is None:
            try:
                os.killpg(self.pid, sig)  # start_new_session: pgid == pid
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + (grace if sig != signal.SIGKILL else 0.0)
        while True:  # members of the group that outlive the leader (spawned apps)
            try:
                os.killpg(self.pid, 0)
            except (ProcessLookupError, PermissionError):
                break
            if time.monotonic() >= deadline:
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    break
                deadline = time.monotonic() + 5.0
            time.sleep(0.1)
        self.popen.wait()
        self._thread.join(timeout=5)
        self._fh.close()
        return self.popen.returncode


class LocalFederation:
    """SuperLink + SuperNodes on loopback, each a separate process group; a context manager.

    ``work``: folder for certificates, keys, FLWR_HOME, logs, node data and state.
    """

    def __init__(self, work: Path, num_nodes: int, insecure: bool = False,
                 echo: Callable[[str, str], None] | None = None, echo_all: bool = False):
        if num_nodes < 1:
            raise ValueError("num_nodes must be >= 1")
        self.work, self.num_nodes, self.insecure = Path(work).resolve(), num_nodes, insecure
        self.echo, self.echo_all = echo, echo_all
        self.procs: dict[str, Proc] = {}
        self._closing = threading.Event()
        self._restarts: dict[int, threading.Thread] = {}
        self.port = free_port()
        self.node_ports = [free_port() for _ in range(num_nodes)]
        self.flwr_home = self.work / "flwr-home"
        self.certs = self.work / "certs"
        self.keys = self.work / "keys"
        self.logs = self.work / "logs"
        self.node_configs: list[str] = [""] * num_nodes
        self.env = dict(os.environ)
        self.env.update({
            "FLWR_HOME": str(self.flwr_home),
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
            "FEDFR_NUM_THREADS": os.environ.get("FEDFR_NUM_THREADS", "1"),
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
            .rstrip(os.pathsep),
            "PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                     os.environ.get("PATH", "")]),
        })

    # -- context manager: always stop what was started ---------------------------------------
    def __enter__(self) -> LocalFederation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def _echo_for(self, name: str) -> Callable[[str, str], None] | None:
        if self.echo is None:
            return None
        if self.echo_all:
            return self.echo

        def filtered(who: str, line: str) -> None:
            if _ECHO.search(line):
                self.echo(who, line)
        return filtered

    def _start(self, name: str, cmd: list[str], echo: bool = True) -> Proc:
        old = self.procs.get(name)
        if old is not None and old.alive():
            raise LaunchError(f"{name} is already running (pid {old.pid})")
        proc = Proc(name, cmd, self.env, self.logs / f"{name}.log",
                    self._echo_for(name) if echo else None)
        self.procs[name] = proc
        log.info("started %s (pid %d): %s", name, proc.pid, " ".join(cmd))
        return proc

    # -- setup -------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Certificates, node keys and the Flower configuration (connection to this SuperLink)."""
        self.flwr_home.mkdir(parents=True, exist_ok=True)
        lines = ["[superlink]", f"default = {_toml_str(CONNECTION)}", "",
                 f"[superlink.{CONNECTION}]", f"address = {_toml_str(self.address)}"]
        if self.insecure:
            lines.append("insecure = true")
        else:
            if not (self.certs / "ca.crt").exists():
                make_ca_and_server_cert(self.certs, [LOOPBACK, "localhost"])
            lines.append(f"root-certificates = {_toml_str(self.certs / 'ca.crt')}")
            for i in range(self.num_nodes):
                if not (self.keys / f"node-{i}").exists():
                    make_node_key(self.keys, f"node-{i}")
        (self.flwr_home / "config.toml").write_text("\n".join(lines) + "\n")

    def superlink_cmd(self) -> list[str]:
        cmd = [_bin("flower-superlink"), "--host", LOOPBACK, "--port", str(self.port),
               "--database", str(self.work / "superlink.db"),
               "--disable-runtime-dependency-installation"]
        if self.insecure:
            return cmd + ["--insecure"]
        return cmd + ["--ssl-ca-certfile", str(self.certs / "ca.crt"),
                      "--ssl-certfile", str(self.certs / "server.pem"),
                      "--ssl-keyfile", str(self.certs / "server.key"),
                      "--enable-supernode-auth"]

    def start_superlink(self, timeout: float = 60.0) -> Proc:
        proc = self._start("superlink", self.superlink_cmd())
        if not proc.wait_for(r"Uvicorn running on|Starting Flower SuperExec", timeout=timeout):
            raise LaunchError(f"SuperLink did not start within {timeout:g} s; see "
                              f"{proc.log_path}:\n{proc.output()[-3000:]}")
        return proc

    def flwr(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        """A ``flwr`` CLI command against this federation's FLWR_HOME (not streamed)."""
        cmd = [flwr_executable(), *args]
        return subprocess.run(cmd, env=self.env, cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout)

    def register(self, i: int) -> int:
        """Register SuperNode ``i``'s public key with the SuperLink; returns its node id."""
        res = self.flwr("supernode", "register", str(self.keys / f"node-{i}.pub"), CONNECTION,
                        "--format", "json")
        if "already in use" in (res.stdout + res.stderr).lower():
            log.info("node-%d's key is already registered (SuperLink database %s)", i,
                     self.work / "superlink.db")
            return -1
        try:
            node_id = int(json.loads(res.stdout[res.stdout.index("{"):])["node-id"])
        except (ValueError, KeyError) as exc:
            raise LaunchError(f"registering node-{i}'s key failed (rc {res.returncode}):\n"
                              f"{res.stdout[-2000:]}{res.stderr[-2000:]}") from exc
        log.info("registered node-%d (public key %s) as node id %d", i,
                 self.keys / f"node-{i}.pub", node_id)
        return node_id

    def list_nodes(self) -> list[dict[str, Any]]:
        res = self.flwr("supernode", "list", CONNECTION, "--format", "json")
        try:
            return list(json.loads(res.stdout[res.stdout.index("{"):])["nodes"])
        except (ValueError, KeyError):
            return []

    def supernode_cmd(self, i: int, node_config: str, extra: list[str] | None = None,
                      port: int | None = None) -> list[str]:
        """SuperNode ``i``'s command (its key, its ClientAppIo port unless ``port`` is given)."""
        cmd = [_bin("flower-supernode"), "--superlink", self.address,
               "--host", LOOPBACK, "--port", str(port or self.node_ports[i]),
               "--node-config", node_config]
        if self.insecure:
            cmd.append("--insecure")
        else:
            cmd += ["--root-certificates", str(self.certs / "ca.crt"),
                    "--auth-supernode-private-key", str(self.keys / f"node-{i}")]
        return cmd + list(extra or [])

    def start_supernode(self, i: int, node_config: str | None = None) -> Proc:
        if node_config is not None:
            self.node_configs[i] = node_config
        return self._start(f"supernode-{i}", self.supernode_cmd(i, self.node_configs[i]))

    def kill_supernode(self, i: int) -> None:
        """SIGKILL SuperNode ``i`` and the ClientApp it runs (a machine dying mid-round)."""
        proc = self.procs[f"supernode-{i}"]
        log.warning("killing supernode-%d (pid %d)", i, proc.pid)
        proc.stop(signal.SIGKILL)

    def restart_supernode(self, i: int, retry_for: float = 240.0, pause: float = 5.0
                          ) -> threading.Thread:
        """Start SuperNode ``i`` again (same key, node-config, data and state) in the background.

        The SuperLink refuses a key whose previous session has not lapsed yet (Flower 1.41: up to
        2 heartbeats of 30 s after the node died; the SuperNode exits with code 305, "Failed to
        activate SuperNode"), so this retries every ``pause`` s for up to ``retry_for`` s, as a
        service manager (systemd ``Restart=on-failure``) does on a real host.
        """
        def loop() -> None:
            deadline = time.monotonic() + retry_for
            while not self._closing.is_set() and time.monotonic() < deadline:
                proc = self.start_supernode(i)
                while proc.alive() and not self._closing.is_set():
                    if proc.wait_for(r"SuperNode ID:", timeout=2.0):
                        log.info("supernode-%d rejoined (pid %d)", i, proc.pid)
                        return
                proc.stop()  # also ends what it left in its process group
                log.info("supernode-%d not admitted yet; retrying in %g s", i, pause)
                self._closing.wait(pause)
            log.warning("supernode-%d did not rejoin within %g s", i, retry_for)

        thread = threading.Thread(target=loop, name=f"restart-supernode-{i}", daemon=True)
        self._restarts[i] = thread
        thread.start()
        return thread

    def wait_online(self, count: int, timeout: float = 120.0) -> None:
        """Until ``count`` SuperNodes are online (``flwr supernode list``); LaunchError if not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            online = [n for n in self.list_nodes() if n.get("status") == "online"]
            if len(online) >= count:
                return
            restarting = {f"supernode-{i}" for i, t in self._restarts.items() if t.is_alive()}
            dead = [name for name, p in list(self.procs.items())
                    if name.startswith("supernode") and name not in restarting
                    and not p.alive()]
            if dead:
                p = self.procs[dead[0]]
                raise LaunchError(f"{dead[0]} exited (rc {p.popen.returncode}); see "
                                  f"{p.log_path}:\n{p.output()[-3000:]}")
            time.sleep(1.0)
        raise LaunchError(f"fewer than {count} SuperNodes online after {timeout:g} s; logs in "
                          f"{self.logs}")

    def run_app(self, run_config: str, app: Path = ROOT) -> Proc:
        """Start ``flwr run <app> <connection> --stream`` (its output is always echoed)."""
        cmd = [flwr_executable(), "run", str(app), CONNECTION, "--stream"]
        if run_config:
            cmd += ["--run-config", run_config]
        proc = Proc("flwr-run", cmd, self.env, self.logs / "flwr-run.log", self.echo)
        self.procs["flwr-run"] = proc
        return proc

    def stop(self) -> None:
        """Stop every started process, newest first, each by its process group id."""
        self._closing.set()
        for thread in self._restarts.values():
            thread.join(timeout=30)
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.alive():
                log.info("stopping %s (pid %d)", name, proc.pid)
            proc.stop()
        self.procs.clear()


# --- the command ------------------------------------------------------------------------------
def prepare_run_config(run_config: str, num_nodes: int, work: Path) -> dict[str, Any]:
    """The run config the launcher uses: one client per SuperNode, absolute output/cache paths,
    impostors from the public set (a node holds no other client's images)."""
    values = parse_run_config(run_config)
    values["num-clients"] = num_nodes
    values.setdefault("personal-impostors", "public")
    values.setdefault("output-dir", str(work / "output"))
    values.setdefault("cache-dir", str(work / "cache"))
    return values


def export_nodes(values: dict[str, Any], work: Path) -> list[Path]:
    """Export each client's folder under ``<work>/nodes`` (the run's workload decides what a node
    holds; skipped when already up to date)."""
    from fedfr.config import resolve
    from fedfr.workloads import get_workload

    cfg = resolve(values)
    workload = get_workload(cfg.task)
    workload.check_config(cfg)
    return workload.export_nodes(cfg, work / "nodes")


def node_config(i: int, num_nodes: int, data_dir: Path, state_dir: Path) -> str:
    return (f"partition-id={i} num-partitions={num_nodes} data-dir={_toml_str(data_dir)} "
            f"state-dir={_toml_str(state_dir)}")


def node_table(report: dict[str, Any]) -> str:
    """Markdown table: per round, nodes expected / replied / failed and why."""
    lines = ["| round | expected | replied | failed | failures |", "|---:|---:|---:|---:|---|"]
    for r in report.get("rounds", []):
        why = "; ".join(f"node {f['node_id']}: {f['reason']}" for f in r.get("failures", []))
        lines.append(f"| {r['round']} | {r.get('nodes-expected', r.get('num-sent', ''))} | "
                     f"{r.get('nodes-replied', '')} | {r.get('nodes-failed', '')} | {why} |")
    return "\n".join(lines)


def launch(args: argparse.Namespace) -> int:
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.insecure:
        log.warning("--insecure: TLS and SuperNode authentication are OFF; traffic is plain "
                    "HTTP and any process can join as a SuperNode. Loopback testing only.")
    values = prepare_run_config(args.run_config, args.num_supernodes, work)
    out = checked_output_dir(values)  # config errors before any process
    clear_results(out)  # an older run's table must never pass for this one's
    log.info("exporting each client's partition to %s", work / "nodes")
    data_dirs = export_nodes(values, work)

    def echo(who: str, line: str) -> None:
        print(line if who == "flwr-run" else f"[{who}] {line}", flush=True)

    with LocalFederation(work, args.num_supernodes, insecure=args.insecure, echo=echo,
                         echo_all=args.echo_all) as fed:
        fed.prepare()
        fed.start_superlink()
        if not args.insecure:
            for i in range(args.num_supernodes):
                fed.register(i)
        for i, d in enumerate(data_dirs):
            fed.start_supernode(i, node_config(i, args.num_supernodes, d,
                                               work / "state" / f"node-{i}"))
        fed.wait_online(args.num_supernodes, timeout=args.start_timeout)
        log.info("%d SuperNodes online; running the app", args.num_supernodes)
        run = fed.run_app(format_run_config(values))
        rc = run.popen.wait()
    report_path = out / "report.json"
    status = run_outcome(rc, out)  # flwr run exits 0 when the ServerApp raised
    if status != 0 or not report_path.exists():
        print(f"flwr run failed (rc {rc}); logs in {work / 'logs'}", file=sys.stderr)
        return status or 1
    report = json.loads(report_path.read_text())
    print(f"\nresults (%), also in {out / 'results.md'} and {report_path}:")
    print((out / "results.md").read_text())
    print("nodes per round:\n" + node_table(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-supernodes", type=int, default=3)
    parser.add_argument("--run-config", default="", help="overrides, Flower's key=value syntax")
    parser.add_argument("--work", type=Path, default=ROOT / "outputs" / "federation",
                        help="certificates, keys, logs, node data, state and the report")
    parser.add_argument("--insecure", action="store_true",
                        help="no TLS, no SuperNode authentication (prints a warning)")
    parser.add_argument("--echo-all", action="store_true",
                        help="echo every SuperLink/SuperNode log line (default: warnings/errors)")
    parser.add_argument("--start-timeout", type=float, default=120.0,
                        help="seconds to wait for the SuperNodes to come online")
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of a user error (default: one line, exit 2)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s", stream=sys.stderr)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    # Ctrl-C stops the federation even when the launcher was started with SIGINT ignored (a
    # background job of a non-interactive shell inherits SIG_IGN, and Python then never raises
    # KeyboardInterrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return run_entry_point(lambda: launch(args), "server.launch", debug=args.debug)
    except KeyboardInterrupt:
        print("interrupted; every started process was stopped", file=sys.stderr)
        return 130
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
