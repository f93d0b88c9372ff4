"""Roofline time of one call on one device: the larger of compute time and memory time, plus
kernel-launch latency on GPUs.  A lower bound on what real code achieves."""
from __future__ import annotations

from dataclasses import dataclass

from .costs import Cost
from .devices import DeviceSpec


@dataclass(frozen=True)
class Estimate:
    """Roofline time (s) of one call and which ceiling sets it."""

    time_s: float
    compute_s: float
    memory_s: float
    launch_s: float
    bound: str  # "memory", "compute" or "latency"
    device: str

    @property
    def calls_per_s(self) -> float:
        return 1.0 / self.time_s if self.time_s > 0 else float("inf")


def roofline(cost: Cost, device: DeviceSpec) -> Estimate:
    """``max(FLOPs / peak, bytes / bandwidth) + kernels * launch latency``, labelled by the term
    that dominates."""
    compute = cost.flops / device.peak_flops(cost.precision, cost.dense)
    memory = cost.bytes / device.bandwidth
    launch = cost.kernels * device.launch_s
    body = max(compute, memory)
    if launch > body:
        bound = "latency"
    else:
        bound = "memory" if memory >= compute else "compute"
    return Estimate(body + launch, compute, memory, launch, bound, device.name)
