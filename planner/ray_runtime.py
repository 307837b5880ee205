"""Starting or joining Ray the same way everywhere, and running stateless tasks that survive lost nodes.

The embedded default is a local Ray with no dashboard and quiet logs: a laptop user never sees Ray.
``--ray-address`` joins an existing cluster instead, with the code otherwise unchanged:

* ``host:port``: the cluster's GCS address (``ray start --head --port 6379`` prints it). The driver
  runs here and must be able to reach every node (same network, same Python and Ray versions, fleetwise
  installed on the nodes: the Docker image in ``deploy/``).
* ``ray://host:10001``: Ray Client, for a driver outside the cluster's network (the head's
  ``--ray-client-server-port``, 10001 by default); the driver's work then runs on the head.
* ``auto``: the cluster named by ``RAY_ADDRESS``, else the one ``ray start`` recorded on this machine
  (what a KubeRay ``RayJob`` entrypoint or ``ray job submit`` uses).
* ``local``: start a private local Ray even when ``RAY_ADDRESS`` is set.

With no address at all, ``RAY_ADDRESS`` (set by Ray Jobs for their entrypoint) is joined when present;
otherwise a local Ray is started, as before. Clusters with token authentication need the token in the
driver's environment (``RAY_AUTH_MODE=token`` with ``RAY_AUTH_TOKEN`` or ``~/.ray/auth_token``).

Node loss: every task runs with Ray's ``max_retries`` (a task whose worker or node dies is re-run by
Ray) and :func:`map_tasks` re-submits a task whose retries were all spent on system failures, so a run
completes as long as one node is left. Tasks are pure functions of their arguments (seeds included), so a
re-run on another node gives the same answer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from traces.errors import InputError

T = TypeVar("T")
R = TypeVar("R")

ADDRESS_FIELD = "--ray-address"
ADDRESS_EXPECTED = "host:port (GCS), ray://host:10001 (Ray Client), auto or local"

MAX_RETRIES = 3
"""Times Ray itself re-runs a task whose worker or node died."""

MAX_RESUBMITS = 2
"""Times :func:`map_tasks` submits a task again once Ray's own retries are spent on system failures."""

PROBE_TIMEOUT_S = 5.0
"""How long to wait for a TCP connection to a cluster address before calling it unreachable (Ray itself
would keep retrying for minutes)."""


RAY_THREAD_PREFIX = "ray_"
"""How the threads Ray starts in a driver are named (``ray_listen_error_messages``, ``ray_print_logs``)."""


class RayNoticesToStderr:
    """``sys.stdout`` while Ray runs in this process: what Ray's own driver threads write goes to stderr.

    Why: Ray's driver prints cluster notices ("a worker died", "node lost") on stdout from its
    error-listener thread, even with log forwarding off, and at any moment, before or inside the results
    a command prints there (``--json`` must parse). Everything else still goes to the wrapped stream.
    """

    def __init__(self, out: Any) -> None:
        self.wrapped = out

    def write(self, text: str) -> int:
        if threading.current_thread().name.startswith(RAY_THREAD_PREFIX):
            return int(sys.stderr.write(text))
        return int(self.wrapped.write(text))

    def flush(self) -> None:
        self.wrapped.flush()
        if threading.current_thread().name.startswith(RAY_THREAD_PREFIX):
            sys.stderr.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


def _route_ray_notices_to_stderr() -> None:
    if not isinstance(sys.stdout, RayNoticesToStderr):
        sys.stdout = RayNoticesToStderr(sys.stdout)  # type: ignore[assignment]


class RayMode(StrEnum):
    """``--ray``: whether a command's sweeps run on Ray (``auto``: as the command judges its work)."""

    AUTO = "auto"
    ON = "on"
    OFF = "off"


class AddressKind(StrEnum):
    """How a driver reaches Ray."""

    LOCAL = "local"
    AUTO = "auto"
    GCS = "gcs"
    CLIENT = "client"


@dataclass(frozen=True)
class RayTarget:
    """A parsed ``--ray-address``.

    Attributes:
        kind: start locally, let Ray find the cluster, join a GCS address, or connect with Ray Client.
        address: what ``ray.init`` gets (None to start a local instance).
        host, port: the endpoint to probe (GCS and Ray Client only).
    """

    kind: AddressKind
    address: str | None
    host: str | None = None
    port: int | None = None


def _host_port(text: str, original: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"bad Ray address {original!r}", field=ADDRESS_FIELD, expected=ADDRESS_EXPECTED)
    return host, int(port)


def parse_ray_address(address: str | None, *, environ: Mapping[str, str]) -> RayTarget:
    """Turn ``--ray-address`` (or its absence) into a :class:`RayTarget`.

    Args:
        address: the flag's value; None or empty means "default".
        environ: the process environment (``RAY_ADDRESS`` is honoured when no address is given).

    Raises:
        InputError: the address is neither ``host:port``, ``ray://host:port``, ``auto`` nor ``local``.

    >>> parse_ray_address(None, environ={}).kind.value
    'local'
    >>> parse_ray_address("10.0.0.5:6379", environ={})
    RayTarget(kind=<AddressKind.GCS: 'gcs'>, address='10.0.0.5:6379', host='10.0.0.5', port=6379)
    >>> parse_ray_address("ray://head:10001", environ={}).kind.value
    'client'
    >>> parse_ray_address(None, environ={"RAY_ADDRESS": "auto"}).kind.value
    'auto'
    """
    text = (address or "").strip()
    if not text:
        env = environ.get("RAY_ADDRESS", "").strip()
        if not env:
            return RayTarget(AddressKind.LOCAL, None)
        text = env
    if text == "local":
        return RayTarget(AddressKind.LOCAL, None)
    if text == "auto":
        return RayTarget(AddressKind.AUTO, "auto")
    if text.startswith("ray://"):
        host, port = _host_port(text.removeprefix("ray://"), text)
        return RayTarget(AddressKind.CLIENT, text, host, port)
    if "://" in text:
        raise InputError(f"unsupported scheme in Ray address {text!r}", field=ADDRESS_FIELD,
                         expected=ADDRESS_EXPECTED)
    host, port = _host_port(text, text)
    return RayTarget(AddressKind.GCS, text, host, port)


def _probe(target: RayTarget) -> None:
    """Fail fast, as bad input, when nothing listens at the address (``ray.init`` would hang)."""
    if target.host is None or target.port is None:
        return
    try:
        with socket.create_connection((target.host, target.port), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        raise InputError(f"no Ray cluster answers at {target.address} ({exc.strerror or exc})",
                         field=ADDRESS_FIELD, expected="the address of a running cluster: " + ADDRESS_EXPECTED
                         ) from None


def _resolve_auto() -> RayTarget:
    """The cluster ``auto`` names, as Ray finds it (``RAY_ADDRESS``, then the address the last ``ray
    start`` on this machine recorded, then any running GCS), so that it can be probed before joining.

    Why: ``ray.init(address="auto")`` with a recorded cluster that is gone waits minutes; resolved and
    probed here, a dead cluster is one clear line in seconds, like the other address forms.
    """
    from ray._private.services import get_ray_address_from_environment

    try:
        found = get_ray_address_from_environment("auto", None)
    except ConnectionError:
        found = None
    if not found or found == "auto":
        raise InputError("auto: no Ray cluster is running or recorded on this machine", field=ADDRESS_FIELD,
                         expected="start one (ray start --head) or give its address: " + ADDRESS_EXPECTED)
    resolved = parse_ray_address(found, environ={})
    if resolved.kind is AddressKind.LOCAL or resolved.kind is AddressKind.AUTO:
        raise InputError(f"auto resolved to {found!r}", field=ADDRESS_FIELD, expected=ADDRESS_EXPECTED)
    return resolved


def init_ray(address: str | None = None, *, num_cpus: int | None = None,
             environ: Mapping[str, str] | None = None) -> RayTarget:
    """``ray.init`` for ``address`` (see the module docstring); returns what was joined or started.

    Raises:
        InputError: bad or unreachable address, or Ray refused to connect (version mismatch, missing
            authentication token, ...).
    """
    import ray

    target = parse_ray_address(address, environ=os.environ if environ is None else environ)
    _route_ray_notices_to_stderr()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    if target.kind is AddressKind.LOCAL:
        # ``address="local"`` so that a RAY_ADDRESS in the environment cannot turn this into a join.
        ray.init(address="local", num_cpus=num_cpus or max(1, os.cpu_count() or 1), include_dashboard=False,
                 log_to_driver=False, logging_level=logging.WARNING, configure_logging=True)
        return target
    if target.kind is AddressKind.AUTO:
        target = _resolve_auto()
    _probe(target)
    try:
        if target.kind is AddressKind.CLIENT:
            ray.init(address=target.address, log_to_driver=False)
        else:
            ray.init(address=target.address, log_to_driver=False, logging_level=logging.WARNING,
                     configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise InputError(f"cannot join the Ray cluster at {target.address}: {str(exc).splitlines()[0]}",
                         field=ADDRESS_FIELD, expected=ADDRESS_EXPECTED) from None
    return target


@contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[None]:
    """Use Ray inside the block: join ``address`` or start a local instance, shut down what we started.

    If Ray is already initialised (tests, notebooks, a driver that set it up), it is used as it is and
    left running.

    Args:
        address: see the module docstring (None: ``RAY_ADDRESS`` if set, else a local Ray).
        num_cpus: CPUs of a local instance (default: all of this machine's).

    Raises:
        InputError: see :func:`init_ray`.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    init_ray(address, num_cpus=num_cpus)
    try:
        yield
    finally:
        ray.shutdown()


def is_system_failure(exc: BaseException) -> bool:
    """True for failures of the machinery (a worker, node or object lost), not of the task's own code.

    Such a task is worth running again; an error raised by the task itself (bad input) is not.
    """
    import ray.exceptions as rex

    system = (rex.WorkerCrashedError, rex.NodeDiedError, rex.ObjectLostError, rex.RayActorError,
              rex.LocalRayletDiedError, rex.OutOfMemoryError, rex.RaySystemError)
    return isinstance(exc, system) and not isinstance(exc, rex.RayTaskError)


def unwrap_task_error(exc: BaseException) -> BaseException:
    """The task's own exception inside Ray's ``RayTaskError`` (so an ``InputError`` stays one line)."""
    import ray.exceptions as rex

    if isinstance(exc, rex.RayTaskError) and isinstance(exc.cause, Exception):
        return exc.cause
    return exc


def map_tasks(fn: Callable[..., R], items: Sequence[tuple[Any, ...]], *, num_cpus: float = 1,
              on_done: Callable[[int, int], None] | None = None,
              max_resubmits: int = MAX_RESUBMITS) -> list[R]:
    """Run ``fn(*item)`` for every item as a stateless Ray task; results in input order.

    Call inside a Ray session. Tasks are spread over the cluster's nodes (``SPREAD``): they are
    CPU-bound and independent. A task lost to a dead worker or node is re-run by Ray (``max_retries``);
    if that still fails with a system error it is submitted again, at most ``max_resubmits`` times.
    Errors raised by ``fn`` itself are not retried and surface unwrapped.

    While the tasks run, ``sys.stdout`` points at ``sys.stderr``: Ray's driver prints notices such as
    "Task simulate_shard failed. There are 3 retries remaining" from a background thread to stdout, which
    would corrupt ``--json`` output piped to another program.

    Args:
        fn: a pure, module-level function (picklable by reference).
        items: argument tuples (large arguments: pass ``ray.put`` references, shared by every task).
        num_cpus: CPUs each task holds.
        on_done: called with ``(tasks finished, tasks)`` as results arrive (progress bars).
        max_resubmits: submissions after the first once Ray's retries are exhausted.

    Raises:
        Exception: the first error raised by ``fn`` (unwrapped), or the system error of a task that
            failed ``1 + max_resubmits`` times.
    """
    import ray

    remote = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False, num_cpus=num_cpus,
                        scheduling_strategy="SPREAD")(fn)
    with contextlib.redirect_stdout(sys.stderr):
        return _gather(ray, remote, items, on_done, max_resubmits)


def _gather(ray: Any, remote: Any, items: Sequence[tuple[Any, ...]],
            on_done: Callable[[int, int], None] | None, max_resubmits: int) -> list[Any]:
    """Submit every item, collect results by index, re-submit items lost to system failures."""
    results: dict[int, Any] = {}
    attempts = dict.fromkeys(range(len(items)), 1)
    pending: dict[Any, int] = {remote.remote(*items[i]): i for i in range(len(items))}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        ref = ready[0]
        i = pending.pop(ref)
        try:
            results[i] = ray.get(ref)
        except Exception as exc:
            if is_system_failure(exc) and attempts[i] <= max_resubmits:
                attempts[i] += 1
                pending[remote.remote(*items[i])] = i
                continue
            for other in pending:
                ray.cancel(other, force=True)
            raise unwrap_task_error(exc) from None
        if on_done is not None:
            on_done(len(results), len(items))
    return [results[i] for i in range(len(items))]
