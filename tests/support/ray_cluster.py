"""Test support (not shipped): a real multi-node Ray cluster on one machine, for tests of ``--ray-address``.

:class:`LocalRayCluster` runs ``ray start --head`` and ``ray start --address`` (worker nodes) as child
processes of this one, each with ``--block`` in its own session, so that each node's processes (raylet,
agents, workers, and on the head the GCS) form one session that belongs to us. Stopping or killing a node
signals the processes of that session only: other Ray instances on the machine (another user's, another
test run's) are never touched, unlike ``ray stop``, which ends every Ray process it can find.

Every port is picked free on loopback (bind to port 0), worker ports are chosen by the OS, the dashboard
is off and usage stats are disabled; the cluster keeps its files in its own short temporary folder (Unix
socket paths are limited to ~107 bytes) and uses its own authentication token, which drivers get through
:attr:`LocalRayCluster.env`.

Starting a node takes 5-15 s on a small machine; :meth:`LocalRayCluster.kill_worker` and
:meth:`LocalRayCluster.add_worker` let one cluster serve several tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

WORKER_RESOURCE = "worker_node"
"""Custom resource every worker node has (one unit): work can be pinned to a worker node with it."""

HEAD_RESOURCE = "head_node"
"""Custom resource of the head node (one unit)."""

STARTED = "Ray runtime started"
"""What ``ray start`` prints once its node is up (and, for a worker node, registered)."""

FAST_FAILURE_DETECTION = {
    # A killed node is declared dead after ~3 missed 1 s health checks instead of ~15 s.
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}


def ray_binary() -> Path:
    """The ``ray`` CLI of this interpreter's environment (a venv's ``bin/ray``)."""
    return Path(sys.executable).parent / "ray"


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports free right now on ``host`` (all bound at once, then released).

    >>> len(set(free_ports(3)))
    3
    """
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def session_members(sid: int) -> dict[int, str]:
    """``{pid: command line}`` of the live processes in session ``sid`` (Linux ``/proc``).

    A node's processes share the session of its ``ray start`` (the raylet gives each worker a process
    group of its own, but not a session). A Ray worker's command line is its process title:
    ``ray::IDLE`` when idle, ``ray::<function>`` while it runs a task.
    """
    out: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] == "Z" or int(fields[3]) != sid:
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError, IndexError):
            continue  # the process ended while we looked
        out[int(entry.name)] = cmd
    return out


@dataclass(frozen=True)
class RayNode:
    """One ``ray start --block`` process (the leader of the node's session).

    Attributes:
        name: ``head`` or ``worker-N``.
        process: the ``ray start`` process; its pid is the node's session id.
        log: its stdout and stderr.
    """

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def sid(self) -> int:
        """The node's session (every process of the node is in it; its leader's pid)."""
        return self.process.pid

    def alive(self) -> bool:
        """True while the node's ``ray start`` process runs."""
        return self.process.poll() is None

    def running(self, function: str) -> list[int]:
        """Pids of this node's workers executing a task of ``function`` right now."""
        title = f"ray::{function}"
        return [pid for pid, cmd in session_members(self.sid).items()
                if cmd == title or cmd.startswith(title + " ")]


class LocalRayCluster:
    """A head node and worker nodes on this machine, each with its own ports and session.

    Use as a context manager (or call :meth:`start` and :meth:`stop`)::

        with LocalRayCluster() as cluster:
            subprocess.run(["fleetwise", "replay", "--ray-address", cluster.address], env=cluster.env)

    Args:
        workers: worker nodes to start with the head.
        head_cpus: CPUs the head offers to tasks.
        worker_cpus: CPUs each worker node offers.
        object_store_mb: object store of each node, MB.
        root: folder for the nodes' files (default: a fresh short folder under /tmp, removed at stop).
        startup_timeout_s: how long a node may take to start.
    """

    def __init__(self, *, workers: int = 1, head_cpus: int = 1, worker_cpus: int = 1,
                 object_store_mb: int = 200, root: Path | None = None,
                 startup_timeout_s: float = 120.0) -> None:
        self._workers = workers
        self._head_cpus = head_cpus
        self._worker_cpus = worker_cpus
        self._object_store = object_store_mb * 1024 * 1024
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="fwray-", dir="/tmp")) if root is None else root
        self._timeout = startup_timeout_s
        self._token = secrets.token_hex(32)
        self.head: RayNode | None = None
        self.worker_nodes: list[RayNode] = []
        self._gcs_port = 0
        self._client_port = 0
        self._started_workers = 0

    # -- addresses and environment ------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The GCS address, ``127.0.0.1:PORT`` (what ``--ray-address`` takes)."""
        return f"127.0.0.1:{self._gcs_port}"

    @property
    def client_address(self) -> str:
        """The Ray Client address, ``ray://127.0.0.1:PORT``."""
        return f"ray://127.0.0.1:{self._client_port}"

    @property
    def env(self) -> dict[str, str]:
        """Environment for a driver of this cluster: this process's, plus the cluster's token.

        ``RAY_ADDRESS`` is removed so that only an explicit address (or ``auto``, if the caller sets
        ``RAY_ADDRESS`` itself) reaches the cluster.
        """
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self._token, RAY_USAGE_STATS_ENABLED="0")
        return env

    # -- life cycle ---------------------------------------------------------------------------------

    def __enter__(self) -> LocalRayCluster:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """Start the head, then the worker nodes; wait until each reports started.

        Raises:
            RuntimeError: a node did not start (its log is quoted).
        """
        self.head = self._start_node("head", self._head_args)
        for _ in range(self._workers):
            self.add_worker()

    def add_worker(self) -> RayNode:
        """Start one more worker node (with the ``worker_node`` resource) and wait until it is up."""
        if self.head is None:
            raise RuntimeError("start the head first")
        self._started_workers += 1
        node = self._start_node(f"worker-{self._started_workers}", self._worker_args)
        self.worker_nodes.append(node)
        return node

    def live_workers(self) -> list[RayNode]:
        """Worker nodes whose processes still run."""
        return [n for n in self.worker_nodes if n.alive()]

    def kill_worker(self, node: RayNode) -> None:
        """Kill a worker node abruptly (SIGKILL to every process of its session: raylet, agents, workers).

        This is a machine failure as the cluster sees it: no graceful drain, the GCS notices through
        missed health checks.
        """
        _kill_session(node.sid, 10.0)
        node.process.wait(timeout=30)

    def stop(self) -> None:
        """Stop every node we started (SIGTERM, then SIGKILL to each node's session)."""
        nodes = [*self.worker_nodes, *([self.head] if self.head is not None else [])]
        for node in nodes:
            _signal_session(node.sid, signal.SIGTERM)
        deadline = time.monotonic() + 3.0
        for node in nodes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for node in nodes:
            _kill_session(node.sid, 10.0)
            if node.process.poll() is None:
                node.process.wait(timeout=30)
        self.worker_nodes = []
        self.head = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def wait_until(self, condition: Callable[[], bool], *, timeout_s: float, what: str,
                   poll_s: float = 0.05) -> None:
        """Poll ``condition`` until true (watching a process from outside has no event to wait on).

        Raises:
            TimeoutError: not true within ``timeout_s``; the message names ``what``.
        """
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
            time.sleep(poll_s)

    # -- internals ----------------------------------------------------------------------------------

    def _common_args(self, cpus: int) -> list[str]:
        nm, om, agent_http, agent_grpc, runtime_env, metrics = free_ports(6)
        return ["--block", "--node-ip-address", "127.0.0.1", "--node-manager-port", str(nm),
                "--object-manager-port", str(om), "--min-worker-port", "0", "--max-worker-port", "0",
                "--dashboard-agent-listen-port", str(agent_http), "--dashboard-agent-grpc-port",
                str(agent_grpc), "--runtime-env-agent-port", str(runtime_env), "--metrics-export-port",
                str(metrics), "--num-cpus", str(cpus), "--num-gpus", "0", "--object-store-memory",
                str(self._object_store), "--disable-usage-stats", "--include-log-monitor", "false"]

    def _head_args(self) -> list[str]:
        self._gcs_port, self._client_port, dashboard = free_ports(3)
        return ["--head", "--port", str(self._gcs_port), "--ray-client-server-port", str(self._client_port),
                "--include-dashboard", "false", "--dashboard-port", str(dashboard),
                "--temp-dir", str(self.root), "--resources", json.dumps({HEAD_RESOURCE: 1}),
                *self._common_args(self._head_cpus)]

    def _worker_args(self) -> list[str]:
        return ["--address", self.address, "--resources", json.dumps({WORKER_RESOURCE: 1}),
                *self._common_args(self._worker_cpus)]

    def _node_env(self) -> dict[str, str]:
        env = self.env
        env.update(FAST_FAILURE_DETECTION)
        return env

    def _start_node(self, name: str, args: Callable[[], list[str]], attempts: int = 3) -> RayNode:
        """``ray start`` with fresh free ports; another try if a port was taken in between."""
        last = ""
        for attempt in range(attempts):
            log = self.root / f"{name}.{attempt}.log"
            with log.open("wb") as fh:
                proc = subprocess.Popen([str(ray_binary()), "start", *args()], stdout=fh,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=self._node_env(), start_new_session=True)
            node = RayNode(name, proc, log)
            deadline = time.monotonic() + self._timeout
            while time.monotonic() < deadline:
                if STARTED in log.read_text(errors="replace"):
                    return node
                if proc.poll() is not None:
                    break
                time.sleep(0.2)
            last = log.read_text(errors="replace")[-3000:]
            _kill_session(node.sid, 10.0)
            proc.wait(timeout=30)
        raise RuntimeError(f"ray node {name} did not start after {attempts} attempts:\n{last}")


def _signal_session(sid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to every process of session ``sid`` (the leader's group first)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(sid, sig)
    for pid in session_members(sid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _kill_session(sid: int, timeout_s: float) -> None:
    """SIGKILL session ``sid`` until none of its processes is left (a dying raylet may still fork)."""
    deadline = time.monotonic() + timeout_s
    while True:
        _signal_session(sid, signal.SIGKILL)
        if not session_members(sid) or time.monotonic() > deadline:
            return
        time.sleep(0.1)


def summary_without(data: Mapping[str, object], keys: frozenset[str]) -> dict[str, object]:
    """``data`` without ``keys`` (wall-clock timings differ run to run; everything else must not).

    >>> summary_without({"a": 1, "wall_s": 2.0}, frozenset({"wall_s"}))
    {'a': 1}
    """
    return {k: v for k, v in data.items() if k not in keys}


def count_call(counter: Path) -> int:
    """Append a line to ``counter`` and return how many calls it has seen (one file per experiment)."""
    with counter.open("a") as fh:
        fh.write("x\n")
    return len(counter.read_text().splitlines())


def crash_worker_until(counter: Path, crashes: int, value: int) -> int:
    """A task that kills its own worker process on its first ``crashes`` calls, then returns ``value``.

    A worker that dies is a system failure to Ray (``WorkerCrashedError``), like a lost node, without
    needing a cluster: it exercises Ray's ``max_retries`` and :func:`planner.ray_runtime.map_tasks`'s own
    re-submission.
    """
    if count_call(counter) <= crashes:
        os._exit(1)
    return value


def raise_input_error(counter: Path) -> int:
    """A task whose own code fails (bad input): it must be reported at once, never retried."""
    from traces.errors import InputError

    count_call(counter)
    raise InputError("bad value in a task", field="x", expected="a good one")
