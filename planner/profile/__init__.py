"""``fleetwise profile``: measure one GPU and ship the numbers as data.

The profiler runs on a GPU host that has torch and NVML but none of the planner's own dependencies
(no polars, pydantic, ray or numba), so this package imports only the standard library, numpy,
pyarrow, yaml (optional), torch and pynvml. Modules that need torch import it inside functions or are
imported only once the caller has checked that torch and CUDA are present:

- :mod:`planner.profile.grid`: the pure-Python grids of shapes to measure (GEMMs of the catalog models'
  linear layers, attention, elementwise ops, whole steps).
- :mod:`planner.profile.stats`: medians, percentiles, FLOP and byte counts.
- :mod:`planner.profile.timing`: CUDA-event timing (CUDA-graph replay for short ops), medians of repeats.
- :mod:`planner.profile.tables`: the exact Parquet schemas of the shipped profile and the writer.
- :mod:`planner.profile.nvml`: a background NVML sampler (power, energy, clocks, utilisation).
- :mod:`planner.profile.micro`: GEMM, attention, memcpy and elementwise microbenchmarks (torch).
- :mod:`planner.profile.llama`: a random-weight Llama-shaped layer stack for whole-step timings.
- :mod:`planner.profile.power`: sustained-load power phases.
- :mod:`planner.profile.engine`: end-to-end validation against transformers' continuous batching.
- :mod:`planner.profile.vllm_run`: vLLM under open-loop trace load (per request, per step, power) and
  its FlashAttention-3 kernels; :mod:`planner.profile.vllm_workload`: the trace windows it replays.
- :mod:`planner.profile.runner`: orchestration (``python -m planner.profile`` on the GPU host).
"""
