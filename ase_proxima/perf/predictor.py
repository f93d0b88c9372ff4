"""Learn a workload's throughput on a target device from its profile on a source device.

As in the thesis (chapter 2, P100 -> V100), the features are what a profile of the run on the
source device gives, the target is the throughput on the target device, and the model is a
random forest whose per-prediction uncertainty is the infinitesimal-jackknife variance
(forestci).  A classifier predicts whether the call will be memory bound on the target device
(achieved bandwidth above 75% of the device's, the thesis's label), and pool-based active
learning picks the next profiles to measure by that variance.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.metrics import confusion_matrix

from .calibrate import fit_all, row_cost
from .devices import DeviceSpec
from .roofline import roofline

MEMORY_BOUND_FRACTION = 0.75
WORKLOADS = ("stream_triad", "matmul_fp64", "matmul_fp32", "lj_nn_pairs", "ensemble_forces", "bayesian_posterior",
             "soap", "deepmd")
FEATURES = ("log_flops", "log_bytes", "log_intensity", "log_time_source", "flop_fraction_source",
            "bandwidth_fraction_source", "kernels", "dense", "fp32", *[f"is_{w}" for w in WORKLOADS])


def features(row: Mapping, source: DeviceSpec) -> np.ndarray:
    """Profile features of one call measured on ``source`` (the order of :data:`FEATURES`)."""
    t = row["time_s"]
    peak = source.peak_flops(row["precision"], row["dense"])
    f = [math.log10(max(row["flops"], 1.0)), math.log10(max(row["bytes"], 1.0)),
         math.log10(max(row["flops"], 1.0) / max(row["bytes"], 1.0)), math.log10(t),
         row["flops"] / t / peak, row["bytes"] / t / source.bandwidth, row["kernels"], float(row["dense"]),
         float(row["precision"] == "fp32")]
    f += [float(row["workload"] == w) for w in WORKLOADS]
    return np.array(f)


def memory_bound(row: Mapping, device: DeviceSpec) -> bool:
    """The thesis's label: achieved bandwidth above 75% of the device's."""
    return row["bytes"] / row["time_s"] > MEMORY_BOUND_FRACTION * device.bandwidth


@dataclass
class Prediction:
    """Predicted seconds per call on the target device, with a relative one-sigma uncertainty."""

    time_s: np.ndarray
    relative_sigma: np.ndarray

    @property
    def throughput(self) -> np.ndarray:
        return 1.0 / self.time_s


class ThroughputPredictor:
    """Random forest from source-device features to the log10 ratio of seconds per call on the
    target to seconds on the source (so a workload the forest knows nothing about defaults to
    neither the source's time nor zero, but to the ratio of similar profiles)."""

    def __init__(self, n_estimators: int = 1000, seed: int = 0) -> None:
        self.forest = RandomForestRegressor(n_estimators=n_estimators, min_samples_leaf=1, random_state=seed,
                                            n_jobs=1)
        self._train_shape: tuple[int, int] | None = None

    def fit(self, x: np.ndarray, time_source: np.ndarray, time_target: np.ndarray) -> ThroughputPredictor:
        x = np.asarray(x, float)
        self.forest.fit(x, np.log10(np.asarray(time_target, float) / np.asarray(time_source, float)))
        self._train_shape = x.shape
        return self

    def predict(self, x: np.ndarray, time_source: np.ndarray) -> Prediction:
        """Times and their uncertainty: forestci's variance of the log10 prediction, as a
        relative one-sigma (``ln 10 * sigma_log10``); negative variances are clipped at zero."""
        x = np.asarray(x, float)
        if self._train_shape is None:
            raise RuntimeError("ThroughputPredictor.predict before fit")
        log_ratio = self.forest.predict(x)
        return Prediction(np.asarray(time_source, float) * 10.0 ** log_ratio, math.log(10.0) * np.sqrt(np.clip(self.variance(x), 0.0, None)))

    def variance(self, x: np.ndarray) -> np.ndarray:
        """Bias-corrected infinitesimal-jackknife variance of the log10 prediction (forestci);
        it can come out slightly negative where the forest agrees with itself."""
        import forestci

        x = np.atleast_2d(np.asarray(x, float))
        # no empirical-Bayes calibration: it shrinks every variance of one call towards a common
        # value (measured: unseen workloads then look as certain as seen ones); the bias-corrected
        # estimate is reliable with the default 1000 trees
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(forestci.random_forest_error(self.forest, self._train_shape, x, calibrate=False))


def mape(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute percentage error of throughputs (calls per second), in percent."""
    pred, true = 1.0 / np.asarray(pred, float), 1.0 / np.asarray(true, float)
    return float(100.0 * np.mean(np.abs(pred - true) / true))


def evaluate(pairs: Sequence[tuple[Mapping, Mapping]], source: DeviceSpec, target: DeviceSpec,
             test_fraction: float = 0.25, seed: int = 0) -> dict:
    """Train on a random part of the paired profiles, test on the rest: MAPE per workload of the
    forest, of the roofline on the target device, and of "same time as on the source"; and the
    memory-bound classifier's confusion matrix."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(pairs))
    n_test = max(1, int(round(test_fraction * len(pairs))))
    test, train = idx[:n_test], idx[n_test:]
    x = np.array([features(s, source) for s, _ in pairs])
    t_src = np.array([s["time_s"] for s, _ in pairs])
    t_dst = np.array([d["time_s"] for _, d in pairs])
    model = ThroughputPredictor(seed=seed).fit(x[train], t_src[train], t_dst[train])
    pred = model.predict(x[test], t_src[test])
    roof = np.array([roofline(row_cost(pairs[k][0]), target).time_s for k in test])
    # the roofline made fair: host overhead and slowdown of each workload fitted on the source's
    # training rows, applied to the target's ceilings
    effs = fit_all([pairs[k][0] for k in train], source)
    calibrated = np.array([effs[pairs[k][0]["workload"]].predict(row_cost(pairs[k][0]), target)
                           if pairs[k][0]["workload"] in effs else np.nan for k in test])
    workloads = np.array([pairs[k][0]["workload"] for k in test])
    per = {}
    for w in sorted(set(workloads)):
        m = workloads == w
        per[w] = {"n_test": int(m.sum()), "forest": mape(pred.time_s[m], t_dst[test][m]),
                  "roofline": mape(roof[m], t_dst[test][m]),
                  "calibrated_roofline": mape(calibrated[m], t_dst[test][m]), "same_as_source": mape(t_src[test][m], t_dst[test][m])}
    overall = {"forest": mape(pred.time_s, t_dst[test]), "roofline": mape(roof, t_dst[test]),
               "calibrated_roofline": mape(calibrated, t_dst[test]),
               "same_as_source": mape(t_src[test], t_dst[test])}
    covered = float(np.mean(np.abs(np.log(pred.time_s / t_dst[test])) <= 2 * pred.relative_sigma))
    labels = np.array([memory_bound(d, target) for _, d in pairs])
    clf = RandomForestClassifier(n_estimators=300, random_state=seed, class_weight="balanced", n_jobs=1)
    clf.fit(x[train], labels[train])
    cm = confusion_matrix(labels[test], clf.predict(x[test]), labels=[False, True])
    return {"source": source.name, "target": target.name, "n_train": int(len(train)), "n_test": int(n_test),
            "mape_overall": overall, "mape_per_workload": per, "within_2_sigma": covered,
            "memory_bound": {"confusion_matrix [[TN, FP], [FN, TP]]": cm.tolist(),
                             "positives_in_data": int(labels.sum()), "rows": int(len(labels))},
            "test_predictions": [{"workload": str(workloads[k]), "params": pairs[test[k]][0]["params"],
                                  "true_s": float(t_dst[test][k]), "forest_s": float(pred.time_s[k]),
                                  "relative_sigma": float(pred.relative_sigma[k]), "roofline_s": float(roof[k]),
                                  "calibrated_roofline_s": float(calibrated[k])}
                                 for k in range(n_test)]}


def active_learning_curve(x: np.ndarray, t_source: np.ndarray, t_target: np.ndarray, test_fraction: float = 0.25, batch: int = 20,
                          seeds: Sequence[int] = (0, 1, 2), n_estimators: int = 500) -> dict:
    """Pool-based active learning (next batch = the pool points of largest forest variance)
    against random selection, at equal training sizes; MAPE on a fixed held-out set."""
    x, t_source, t_target = np.asarray(x, float), np.asarray(t_source, float), np.asarray(t_target, float)
    curves: dict[str, list[list[float]]] = {"active": [], "random": []}
    sizes: list[int] = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        idx = rng.permutation(len(x))
        n_test = int(round(test_fraction * len(x)))
        test, pool0 = idx[:n_test], idx[n_test:]
        base = pool0[:batch]
        for strategy in ("active", "random"):
            chosen = list(base)
            pool = [k for k in pool0 if k not in set(chosen)]
            order = list(rng.permutation(pool))
            scores, these = [], []
            while True:
                model = ThroughputPredictor(n_estimators, seed=seed).fit(x[chosen], t_source[chosen], t_target[chosen])
                these.append(len(chosen))
                scores.append(mape(model.predict(x[test], t_source[test]).time_s, t_target[test]))
                if not pool:
                    break
                if strategy == "active":
                    var = model.variance(x[pool])
                    pick = [pool[k] for k in np.argsort(-var)[:batch]]
                else:
                    pick = order[:batch]
                chosen += pick
                pool = [k for k in pool if k not in set(pick)]
                order = [k for k in order if k not in set(pick)]
            curves[strategy].append(scores)
            sizes = these
    return {"sizes": sizes, "batch": batch, "seeds": list(seeds),
            "active_mape": np.mean(curves["active"], axis=0).tolist(),
            "random_mape": np.mean(curves["random"], axis=0).tolist(),
            "active_mape_runs": curves["active"], "random_mape_runs": curves["random"]}
