"""Regenerate the shipped reduced-unit weights: ``python -m lj_nn.pretrain [topology ...]``.

The paper's Table III topologies by default; each is trained from a fixed seed, so a rerun
reproduces the files up to floating-point summation order.
"""
from __future__ import annotations

import argparse

from .calculator import WEIGHTS_DIR, LennardJonesNN

PAPER_TOPOLOGIES = ("1x3x1", "1x5x1", "1x8x1", "1x3x2x1", "1x3x5x1", "1x5x8x1")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("topologies", nargs="*", default=list(PAPER_TOPOLOGIES))
    p.add_argument("--samples", type=int, default=20_000)
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--restarts", type=int, default=2)
    args = p.parse_args(argv)
    WEIGHTS_DIR.mkdir(exist_ok=True)
    for topo in args.topologies:
        net = LennardJonesNN.train(topo, n_samples=args.samples, steps=args.steps, restarts=args.restarts,
                                   path=WEIGHTS_DIR / f"{topo}.json")
        print(f"{topo}: l2 {net.meta['l2_loss']:.3g}, {net.meta['train_time_s']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
