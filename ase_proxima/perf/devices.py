"""Device peaks: vendor figures for NVIDIA data-centre GPUs (each with its source) and the local
CPU measured here (STREAM-like copy and triad, dense matrix multiply).

Vendor figures are dense peaks (NVIDIA's sparsity-doubled tensor numbers are halved) for the
SXM boards.  A kernel launch costs a few microseconds on any of these GPUs; that latency is a
typical figure, not a vendor one, and is what keeps one small structure per call from reaching
the roofline on a GPU.
"""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import numba
import numpy as np
from threadpoolctl import threadpool_limits

TERA, GIGA = 1e12, 1e9
LAUNCH_S = 5e-6  # typical CUDA kernel launch plus synchronisation latency (not a vendor figure)


@dataclass(frozen=True)
class DeviceSpec:
    """Peak throughput of one device.  FLOP/s and bytes/s; ``tensor_fp32`` is the dense TF32
    tensor-core peak used for matrix-multiply shaped work in single precision (None: no tensor cores)."""

    name: str
    kind: str  # "gpu" or "cpu"
    fp64: float
    fp32: float
    bandwidth: float
    tensor_fp64: float | None = None
    tensor_fp32: float | None = None
    memory_bytes: float | None = None
    launch_s: float = 0.0
    source: str = ""
    measured: dict = field(default_factory=dict)

    def peak_flops(self, precision: str = "fp64", dense: bool = False) -> float:
        """The compute ceiling for work of this precision (tensor cores only for dense work)."""
        if precision not in ("fp64", "fp32"):
            raise ValueError(f"precision must be 'fp64' or 'fp32', got {precision!r}")
        if dense:
            tensor = self.tensor_fp64 if precision == "fp64" else self.tensor_fp32
            if tensor:
                return tensor
        return self.fp64 if precision == "fp64" else self.fp32

    def to_dict(self) -> dict:
        return asdict(self)


DEVICES: dict[str, DeviceSpec] = {
    "P100": DeviceSpec(
        "P100", "gpu", fp64=5.3 * TERA, fp32=10.6 * TERA, bandwidth=732 * GIGA, memory_bytes=16e9,
        launch_s=LAUNCH_S, source="NVIDIA Tesla P100 datasheet (SXM2 / NVLink board): 5.3 TFLOPS FP64, "
        "10.6 TFLOPS FP32, 732 GB/s HBM2"),
    "V100": DeviceSpec(
        "V100", "gpu", fp64=7.8 * TERA, fp32=15.7 * TERA, bandwidth=900 * GIGA, memory_bytes=32e9,
        launch_s=LAUNCH_S, source="NVIDIA Tesla V100 datasheet (SXM2): 7.8 TFLOPS FP64, 15.7 TFLOPS FP32, "
        "900 GB/s HBM2 (its 125 TFLOPS tensor cores are FP16 only)"),
    "A100": DeviceSpec(
        "A100", "gpu", fp64=9.7 * TERA, fp32=19.5 * TERA, bandwidth=2039 * GIGA, tensor_fp64=19.5 * TERA,
        tensor_fp32=156 * TERA, memory_bytes=80e9, launch_s=LAUNCH_S,
        source="NVIDIA A100 datasheet (80 GB SXM4): 9.7 TFLOPS FP64, 19.5 FP64 tensor, 19.5 FP32, "
        "156 TF32 tensor (dense), 2039 GB/s HBM2e"),
    "H100": DeviceSpec(
        "H100", "gpu", fp64=34 * TERA, fp32=67 * TERA, bandwidth=3350 * GIGA, tensor_fp64=67 * TERA,
        tensor_fp32=494.5 * TERA, memory_bytes=80e9, launch_s=LAUNCH_S,
        source="NVIDIA H100 datasheet (SXM5): 34 TFLOPS FP64, 67 FP64 tensor, 67 FP32, "
        "989 TF32 tensor with sparsity (494.5 dense), 3.35 TB/s HBM3"),
    "H200": DeviceSpec(
        "H200", "gpu", fp64=34 * TERA, fp32=67 * TERA, bandwidth=4800 * GIGA, tensor_fp64=67 * TERA,
        tensor_fp32=494.5 * TERA, memory_bytes=141e9, launch_s=LAUNCH_S,
        source="NVIDIA H200 datasheet (SXM): 34 TFLOPS FP64, 67 FP64 tensor, 67 FP32, "
        "989 TF32 tensor with sparsity (494.5 dense), 4.8 TB/s HBM3e, 141 GB"),
}


@numba.njit(cache=True, parallel=True)
def _triad(a, b, c, s):
    for i in numba.prange(a.shape[0]):
        a[i] = b[i] + s * c[i]


@numba.njit(cache=True, parallel=True)
def _copy(a, b):
    for i in numba.prange(a.shape[0]):
        a[i] = b[i]


def _best(fn, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def measure_cpu(threads: int = 1, n: int = 1 << 23, matmul_n: int = 1024, repeats: int = 5) -> DeviceSpec:
    """Measure this CPU with ``threads`` threads: STREAM copy and triad (numba loops over arrays
    of ``n`` doubles, well past the caches) and dense FP64 / FP32 matrix multiply (BLAS).

    The best of ``repeats`` is kept, as STREAM does.  Bandwidth is the triad's (24 bytes per
    element: two reads, one write); copy is recorded alongside."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    old = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        a, b, c = np.zeros(n), np.ones(n), np.full(n, 2.0)
        _triad(a, b, c, 3.0)
        _copy(a, b)
        triad = 24 * n / _best(lambda: _triad(a, b, c, 3.0), repeats)
        copy = 16 * n / _best(lambda: _copy(a, b), repeats)
    finally:
        numba.set_num_threads(old)
    flops = {}
    with threadpool_limits(limits=threads):
        for dtype, key in ((np.float64, "fp64"), (np.float32, "fp32")):
            x = np.random.default_rng(0).standard_normal((matmul_n, matmul_n)).astype(dtype)
            x @ x
            flops[key] = 2 * matmul_n ** 3 / _best(lambda: x @ x, repeats)
    name = f"cpu-{threads}t"
    return DeviceSpec(
        name, "cpu", fp64=flops["fp64"], fp32=flops["fp32"], bandwidth=triad,
        source=f"measured here on {platform.processor() or platform.machine()} ({os.cpu_count()} cores), "
        f"{threads} thread(s), {datetime.now(timezone.utc).date()}",
        measured={"stream_copy_bytes_per_s": copy, "stream_triad_bytes_per_s": triad,
                  "matmul_n": matmul_n, "stream_n": n, "threads": threads})


def save_device(spec: DeviceSpec, path: str | os.PathLike) -> None:
    Path(path).write_text(json.dumps(spec.to_dict(), indent=1))


def load_device(path: str | os.PathLike) -> DeviceSpec:
    return DeviceSpec(**json.loads(Path(path).read_text()))


@lru_cache(maxsize=8)
def _local_cpu(threads: int) -> DeviceSpec:
    return measure_cpu(threads)


def get_device(name: str) -> DeviceSpec:
    """A vendor GPU by name (``"H100"``, case-insensitive), or ``"cpu"`` / ``"cpu-2t"``: this CPU,
    measured on first use in this process."""
    key = name.strip()
    if key.upper() in DEVICES:
        return DEVICES[key.upper()]
    low = key.lower()
    if low == "cpu" or (low.startswith("cpu-") and low.endswith("t") and low[4:-1].isdigit()):
        return _local_cpu(1 if low == "cpu" else int(low[4:-1]))
    raise KeyError(f"unknown device {name!r}; known: {sorted(DEVICES)} and 'cpu', 'cpu-<threads>t'")
