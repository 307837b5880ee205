"""The replay engine's speed, measured side by side (``fleetwise bench replay`` prints it).

Workload: Azure-conversation-like lengths (lognormal, input median 1,020 / mean 1,155, output median 129
/ mean 211), Poisson arrivals at the rate that loads ``replicas`` replicas of Llama-3.1-8B on an H100 to
``load`` of their saturated throughput (measured first on one saturated replica), least-outstanding
routing, one process. Measured: requests/s, simulated time over wall time, peak RSS, a profile of where
the time goes, the pure-Python reference loop on a subset (same requests through both, ratio in the same
run), and the Ray speed-up with 2 workers. Timings are reported, never asserted.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from planner.catalog import load_catalog
from planner.perf import Parallelism, build_replica_perf
from planner.perf.api import ReplicaPerf
from planner.sim import RouterName, SimConfig, replay
from planner.sim import engine as E  # noqa: N812 (the engine's field constants read as E.R_*)
from planner.sim.reference import reference_shard
from planner.sim.replay import engine_setup, make_shard_tasks, simulate_shard
from planner.sim.result import build_result
from planner.sim.synth import azure_conv_like
from traces.schema import RequestTrace


@dataclass(frozen=True)
class _Timed:
    wall_s: float
    requests: int
    sim_s: float

    @property
    def rps(self) -> float:
        return self.requests / self.wall_s if self.wall_s > 0 else float("inf")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _saturated_rps(perf: ReplicaPerf, n: int) -> float:
    """Throughput of one replica under an arrival burst (everything queued at t ~ 0)."""
    tr = azure_conv_like(n, rate_rps=1e6, seed=99)
    return replay(tr, perf, config=SimConfig(replicas=1)).summary.throughput_rps


def _prefix(trace: RequestTrace, n: int) -> RequestTrace:
    return RequestTrace(trace.df.head(n), trace.meta)


def measure_replay_speed(*, requests: int = 1_000_000, replicas: int = 16, load: float = 0.75,
                         reference_requests: int = 3000, ray: bool = True, seed: int = 0,
                         note: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Time the replay engine on the workload above and return what was measured (JSON-ready).

    Args:
        requests, replicas, load: the timed replay.
        reference_requests: the subset run through the pure-Python reference loop too.
        ray: also time 2 shards on 2 local Ray workers.
        seed: workload seed.
        note: progress lines (the saturated rate, compile time).
    """
    cat = load_catalog()
    gpu = cat.gpu("H100-SXM")
    perf = build_replica_perf(cat.model("Llama-3.1-8B"), gpu, Parallelism(tp=1))
    config = SimConfig(replicas=replicas, router=RouterName.LEAST_OUTSTANDING, seed=seed)

    t = time.perf_counter()
    sat = _saturated_rps(perf, 3000)  # also compiles the numba loop for this perf kernel
    compile_and_sat_s = time.perf_counter() - t
    rate = load * sat * replicas
    note(f"saturated replica: {sat:.2f} req/s -> offered {rate:.1f} req/s to {replicas} replicas "
         f"({load:.0%} load); first call incl. numba compile {compile_and_sat_s:.1f} s")

    # --- the timed run, phase by phase (the profile) ---------------------------------------------------
    t0 = time.perf_counter()
    trace = azure_conv_like(requests, rate_rps=rate, seed=seed)
    t1 = time.perf_counter()
    setup = engine_setup(perf, trace, config)
    tasks = make_shard_tasks(trace, config)
    t2 = time.perf_counter()
    outputs = [simulate_shard(task, setup, config) for task in tasks]
    t3 = time.perf_counter()
    result = build_result(trace, outputs, perf=perf, config=config, gpu=gpu)
    t4 = time.perf_counter()
    rss = _peak_rss_mb()
    s = result.summary
    main = _Timed(wall_s=t4 - t1, requests=requests, sim_s=s.makespan_s)
    steps = int(sum(int(o.steps.sum()) for o in outputs))
    kernel_steps = int(sum(int(o.kernel_steps.sum()) for o in outputs))
    # the perf kernel's share: the same number of kernel calls, timed alone
    fn, prm = perf.kernel()
    kernel_s = _kernel_cost(fn, prm, kernel_steps)
    profile = {
        "synthesize_trace_s": t1 - t0,
        "split_into_shards_s": t2 - t1,
        "numba_event_loop_s": t3 - t2,
        "build_result_tables_s": t4 - t3,
        "engine_steps": steps,
        "steps_per_request": steps / requests,
        "kernel_steps": kernel_steps,
        "closed_form_steps": steps - kernel_steps,
        "kernel_upper_bound_s": kernel_s,
    }

    # --- pure-Python reference vs the fast loop on the same subset -------------------------------------
    sub = _prefix(trace, reference_requests)
    sub_task = make_shard_tasks(sub, config)[0]
    sub_setup = engine_setup(perf, sub, config)
    t = time.perf_counter()
    ref_out = reference_shard(sub_task, sub_setup, config)
    ref = _Timed(wall_s=time.perf_counter() - t, requests=reference_requests,
                 sim_s=float(np.nanmax(ref_out.rf[:, E.F_FINISH])))
    t = time.perf_counter()
    fast_out = simulate_shard(sub_task, sub_setup, config)
    fast_sub = _Timed(wall_s=time.perf_counter() - t, requests=reference_requests,
                      sim_s=float(np.nanmax(fast_out.rf[:, E.F_FINISH])))
    agree = float(np.nanmax(np.abs(ref_out.rf[:, :2] - fast_out.rf[:, :2])))

    # --- Ray: 2 shards, sequential in this process vs 2 local workers ----------------------------------
    ray_res: dict[str, float] | None = None
    if ray:
        ray_res = _ray_speedup(trace, perf, config)

    report = {
        "requests": requests,
        "replicas": replicas,
        "offered_rps": rate,
        "saturated_replica_rps": sat,
        "requests_per_s": main.rps,
        "sim_time_over_wall": main.sim_s / main.wall_s,
        "wall_s": main.wall_s,
        "sim_makespan_s": main.sim_s,
        "peak_rss_mb": rss,
        "slo_attainment": s.classes[0].attainment if s.classes else float("nan"),
        "ttft_p99_s": s.classes[0].ttft_p99_s if s.classes else float("nan"),
        "tpot_p99_s": s.classes[0].tpot_p99_s if s.classes else float("nan"),
        "violations": s.violations,
        "profile": profile,
        "reference": {"requests": reference_requests, "python_rps": ref.rps, "fast_rps": fast_sub.rps,
                      "speedup": fast_sub.rps / ref.rps, "max_abs_diff_s": agree},
        "ray": ray_res,
    }
    return report


def _kernel_cost(fn: object, prm: np.ndarray, n: int) -> float:
    import numba as nb

    @nb.njit
    def loop(f, p, m):  # type: ignore[no-untyped-def]
        acc = 0.0
        for i in range(m):
            acc += f(p, 1000.0 + (i % 7), 5e5 + i, 50.0, 6e4 + i)
        return acc

    loop(fn, prm, 10)
    t = time.perf_counter()
    loop(fn, prm, n)
    return time.perf_counter() - t


def _ray_speedup(trace: RequestTrace, perf: ReplicaPerf, config: SimConfig) -> dict[str, float]:
    from dataclasses import replace

    from planner.sim.ray_runner import ensure_ray, ray_map_shards

    cfg2 = replace(config, shards=2)
    t = time.perf_counter()
    seq = replay(trace, perf, config=cfg2)
    seq_s = time.perf_counter() - t
    ensure_ray(num_cpus=2)
    mapper = ray_map_shards(num_cpus=2)
    warm = azure_conv_like(2000, rate_rps=50.0, seed=5)
    replay(warm, perf, config=replace(cfg2, replicas=4), map_shards=mapper)  # start + compile workers
    replay(warm, perf, config=replace(cfg2, replicas=4), map_shards=mapper)
    t = time.perf_counter()
    par = replay(trace, perf, config=cfg2, map_shards=mapper)
    ray_s = time.perf_counter() - t
    same = seq.requests.equals(par.requests)
    return {"sequential_s": seq_s, "ray_s": ray_s, "speedup": seq_s / ray_s, "identical": float(same)}
