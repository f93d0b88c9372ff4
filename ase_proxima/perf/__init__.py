"""Performance prediction: how fast would the GPU-able parts of a run be on another device?

``devices`` holds vendor peaks (with sources) and measures the local CPU; ``costs`` counts
FLOPs and bytes per call of our workloads; ``roofline`` turns both into a lower-bound time;
``predictor`` learns cross-device throughput from measured profiles (random forest with
infinitesimal-jackknife variance, memory-bound classifier, active learning); ``annotate``
attaches the predictions to a run.  Everything here is a prediction and says so.
"""
from .costs import Cost
from .devices import DEVICES, DeviceSpec, get_device, measure_cpu
from .roofline import Estimate, roofline

__all__ = ["Cost", "DEVICES", "DeviceSpec", "Estimate", "get_device", "measure_cpu", "roofline"]
