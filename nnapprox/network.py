"""Small fully connected networks: training (PyTorch, CPU) and numpy inference from plain arrays.

Trained networks are exported as :class:`MLPWeights`: numpy arrays in a small JSON file, so
inference needs neither torch nor a GPU, and the input gradient is exact.

Inputs and outputs are standardised (shift and scale stored with the weights):
the network sees ``(x - x_shift) / x_scale`` and its output is mapped back by
``y * y_scale + y_shift``.  That is part of the approximator, not of the region.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ACTIVATIONS = ("tanh", "softsign", "relu")


def _act(name: str, z: np.ndarray) -> np.ndarray:
    if name == "tanh":
        return np.tanh(z)
    if name == "softsign":  # z / (1 + |z|): tanh's shape at a fraction of its cost
        return z / (1.0 + np.abs(z))
    return np.maximum(z, 0.0)


def _act_grad(name: str, z: np.ndarray, h: np.ndarray) -> np.ndarray:
    if name == "tanh":
        return 1.0 - h * h
    if name == "softsign":
        return 1.0 / (1.0 + np.abs(z)) ** 2
    return (z > 0.0).astype(float)


@dataclass
class MLPWeights:
    """A trained fully connected network as numpy arrays (hidden activations, linear output).

    ``layers[k] = (W, b)`` with ``W`` of shape ``(n_in, n_out)``.
    """

    layers: list[tuple[np.ndarray, np.ndarray]]
    activation: str = "tanh"
    x_shift: np.ndarray = field(default_factory=lambda: np.zeros(1))
    x_scale: np.ndarray = field(default_factory=lambda: np.ones(1))
    y_shift: float = 0.0
    y_scale: float = 1.0
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        self.layers = [(np.asarray(w, float), np.asarray(b, float)) for w, b in self.layers]
        for (w, _), (w2, _) in zip(self.layers, self.layers[1:]):
            if w.shape[1] != w2.shape[0]:
                raise ValueError("layer shapes do not chain")
        self.x_shift = np.atleast_1d(np.asarray(self.x_shift, float))
        self.x_scale = np.atleast_1d(np.asarray(self.x_scale, float))

    @property
    def topology(self) -> tuple[int, ...]:
        return (self.layers[0][0].shape[0],) + tuple(w.shape[1] for w, _ in self.layers)

    @property
    def n_parameters(self) -> int:
        return int(sum(w.size + b.size for w, b in self.layers))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Outputs for inputs ``x`` of shape ``(n, n_in)`` (or ``(n,)`` for one input); shape ``(n,)``."""
        h = self._prepare(x)
        for w, b in self.layers[:-1]:
            h = _act(self.activation, h @ w + b)
        w, b = self.layers[-1]
        return (h @ w + b)[:, 0] * self.y_scale + self.y_shift

    def value_and_gradient(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Outputs ``(n,)`` and their exact derivatives with respect to the inputs ``(n, n_in)``."""
        h = self._prepare(x)
        dh = np.broadcast_to(np.eye(h.shape[1]), (h.shape[0], h.shape[1], h.shape[1]))  # d h / d x_n
        for w, b in self.layers[:-1]:
            z = h @ w + b
            h = _act(self.activation, z)
            dh = np.einsum("nij,jk->nik", dh, w) * _act_grad(self.activation, z, h)[:, None, :]
        w, b = self.layers[-1]
        y = (h @ w + b)[:, 0] * self.y_scale + self.y_shift
        grad = (dh @ w)[:, :, 0] * self.y_scale / self.x_scale
        return y, grad

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, float)
        if x.ndim == 1:
            x = x[:, None]
        if x.shape[1] != self.topology[0]:
            raise ValueError(f"network takes {self.topology[0]} inputs, got {x.shape[1]}")
        return (x - self.x_shift) / self.x_scale

    # ------------------------------------------------------------ persistence
    def todict(self) -> dict[str, Any]:
        return {"topology": list(self.topology), "activation": self.activation,
                "layers": [{"W": w.tolist(), "b": b.tolist()} for w, b in self.layers],
                "x_shift": self.x_shift.tolist(), "x_scale": self.x_scale.tolist(),
                "y_shift": float(self.y_shift), "y_scale": float(self.y_scale), "meta": self.meta}

    @classmethod
    def fromdict(cls, d: dict[str, Any]) -> "MLPWeights":
        return cls(layers=[(np.array(lay["W"]), np.array(lay["b"])) for lay in d["layers"]],
                   activation=d["activation"], x_shift=np.array(d["x_shift"]), x_scale=np.array(d["x_scale"]),
                   y_shift=d["y_shift"], y_scale=d["y_scale"], meta=d.get("meta", {}))

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.todict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MLPWeights":
        return cls.fromdict(json.loads(Path(path).read_text()))


def parse_topology(spec: str | Sequence[int]) -> tuple[int, ...]:
    """``"1x3x1"`` or ``(1, 3, 1)`` -> ``(1, 3, 1)``; at least an input and an output layer."""
    topo = tuple(int(v) for v in (spec.lower().split("x") if isinstance(spec, str) else spec))
    if len(topo) < 2 or min(topo) < 1:
        raise ValueError(f"bad topology {spec!r}: need positive layer widths, input and output at least")
    if topo[-1] != 1:
        raise ValueError(f"topology {spec!r}: only single-output regions are supported")
    return topo


@dataclass
class TrainInfo:
    """How one network was trained (the paper's Table II/III training columns)."""

    topology: tuple[int, ...]
    steps: int
    learning_rate: float
    train_time_s: float
    l2_loss: float  # final mean squared error on the training set, in the output's own units
    restarts: int


def train_mlp(x: np.ndarray, y: np.ndarray, topology: str | Sequence[int], activation: str = "tanh",
              steps: int = 10_000, learning_rate: float = 0.005, refine_steps: int = 2_000,
              restarts: int = 3, sample_weight: np.ndarray | None = None, seed: int = 0,
              threads: int | None = 1) -> tuple[MLPWeights, TrainInfo]:
    """Fit one topology by full-batch Adam then L-BFGS refinement; best of ``restarts`` initialisations.

    ``steps`` Adam steps at ``learning_rate`` are the paper's training steps; the L-BFGS polish
    (``refine_steps`` iterations, 0 to skip) is what lets tiny networks reach their best fit.
    """
    import torch

    topo = parse_topology(topology)
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}")
    x = np.asarray(x, float)
    x = x[:, None] if x.ndim == 1 else x
    y = np.asarray(y, float).ravel()
    if x.shape[0] != y.shape[0] or x.shape[1] != topo[0]:
        raise ValueError(f"x {x.shape} and y {y.shape} do not match topology {topo}")
    if threads:
        torch.set_num_threads(threads)
    x_shift, x_scale = x.mean(0), x.std(0) + 1e-12
    y_shift, y_scale = float(y.mean()), float(y.std() + 1e-12)
    X = torch.tensor((x - x_shift) / x_scale)
    Y = torch.tensor((y - y_shift) / y_scale)
    wts = None if sample_weight is None else torch.tensor(np.asarray(sample_weight, float) / np.mean(sample_weight))

    def loss_of(net):
        r = net(X)[:, 0] - Y
        return (r * r).mean() if wts is None else (wts * r * r).mean()

    best, best_loss = None, math.inf
    t0 = time.perf_counter()
    for k in range(max(1, restarts)):
        torch.manual_seed(seed * 1000 + k)
        mods: list = []
        for a, b in zip(topo[:-2], topo[1:-1]):
            act = {"tanh": torch.nn.Tanh, "softsign": torch.nn.Softsign, "relu": torch.nn.ReLU}[activation]
            mods += [torch.nn.Linear(a, b), act()]
        mods.append(torch.nn.Linear(topo[-2], topo[-1]))
        net = torch.nn.Sequential(*mods).double()
        opt = torch.optim.Adam(net.parameters(), lr=learning_rate)
        for _ in range(steps):
            opt.zero_grad()
            loss = loss_of(net)
            loss.backward()
            opt.step()
        if refine_steps:
            lb = torch.optim.LBFGS(net.parameters(), max_iter=refine_steps, line_search_fn="strong_wolfe",
                                   tolerance_grad=1e-14, tolerance_change=1e-16, history_size=50)

            def closure():
                lb.zero_grad()
                val = loss_of(net)
                val.backward()
                return val

            lb.step(closure)
        with torch.no_grad():
            final = float(loss_of(net))
        if math.isfinite(final) and final < best_loss:
            best_loss, best = final, net
    elapsed = time.perf_counter() - t0
    linear = [m for m in best if isinstance(m, torch.nn.Linear)]
    layers = [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy()) for m in linear]
    weights = MLPWeights(layers=layers, activation=activation, x_shift=x_shift, x_scale=x_scale,
                         y_shift=y_shift, y_scale=y_scale)
    info = TrainInfo(topology=topo, steps=steps, learning_rate=learning_rate, train_time_s=elapsed,
                     l2_loss=best_loss * y_scale**2, restarts=max(1, restarts))
    return weights, info
