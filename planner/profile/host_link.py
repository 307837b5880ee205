"""Measure what a KV tier below HBM moves per second on this host: pinned host-to-device and device-to-host
copies (the DRAM tier's link, and swap), and a file read from local disk (the NVMe tier).

Run on the GPU host: ``python -m planner.profile.host_link --out DIR`` writes ``host_link.json`` (the
copy sizes are those of KV loads: a few prefix blocks up to a long prompt's KV). Why a measurement: the
catalog's DRAM-tier bandwidth is an estimate from the PCIe generation; the figure that decides whether
loading a prefix beats recomputing it is the one this host reaches.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

SIZES_MB: tuple[int, ...] = (2, 8, 32, 128, 512, 1024)
"""Copy sizes: a 16-token block of a 70B model's KV per GPU is about 1.3 MB; a 32k-token prompt's about
2.6 GB."""


def copies(reps: int = 20) -> list[dict[str, float]]:
    """GB/s of pinned host<->device copies per size (median of ``reps``), and the small-copy latency."""
    import torch

    rows = []
    for mb in SIZES_MB:
        n = mb * 1024 * 1024
        host = torch.empty(n, dtype=torch.uint8, pin_memory=True)
        dev = torch.empty(n, dtype=torch.uint8, device="cuda")
        for name, (dst, src) in (("h2d", (dev, host)), ("d2h", (host, dev))):
            times = []
            for _ in range(reps):
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                dst.copy_(src, non_blocking=True)
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            times.sort()
            t = times[len(times) // 2]
            rows.append({"direction": name, "mb": float(mb), "seconds": t, "gbps": n / t / 1e9})
        del host, dev
    return rows


def disk_read(folder: Path, gb: float = 4.0) -> dict[str, float]:
    """GB/s of a sequential read of a fresh ``gb`` GB file in ``folder`` with the page cache bypassed
    (O_DIRECT) where the file system allows it."""
    path = folder / "host_link_probe.bin"
    block = 16 * 1024 * 1024
    n = int(gb * 1e9) // block
    buf = os.urandom(block)
    with path.open("wb") as fh:
        for _ in range(n):
            fh.write(buf)
        fh.flush()
        os.fsync(fh.fileno())
    direct = getattr(os, "O_DIRECT", 0)
    try:
        fd = os.open(path, os.O_RDONLY | direct)
    except OSError:
        fd = os.open(path, os.O_RDONLY)
        direct = 0
    import mmap

    aligned = mmap.mmap(-1, block)
    start = time.perf_counter()
    total = 0
    while True:
        got = os.readv(fd, [aligned])
        if got <= 0:
            break
        total += got
    elapsed = time.perf_counter() - start
    os.close(fd)
    path.unlink()
    return {"bytes": float(total), "seconds": elapsed, "gbps": total / elapsed / 1e9,
            "o_direct": float(bool(direct))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--disk", type=Path, default=Path("/tmp"))
    args = ap.parse_args()
    import torch

    doc = {"gpu": torch.cuda.get_device_name(0), "copies": copies(), "disk": disk_read(args.disk),
           "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "host_link.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
