"""Compiled pair loops for the network and the analytic LJ term (one engine for both).

A force call walks a half neighbour list whose image offsets were fixed at the last list build,
skips pairs beyond the cut-off (the paper's branch stays in the loop: the network replaces the
arithmetic, not the list), evaluates the pair term and adds energy, per-atom energies, forces
and the virial (one shared inline routine).  1xHx1 networks and the analytic term run in one
pass; deeper networks in three (select, evaluate layer by layer, accumulate).  The network is evaluated in
scalar code with its exact derivative carried through the layers, so forces are minus the
gradient of the energy the network defines.
"""
from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _pair_vector(pos, i_idx, j_idx, offsets, p):
    """Atoms of list entry ``p``, the vector from i to j's image, and its squared length."""
    i = i_idx[p]
    j = j_idx[p]
    dx = pos[j, 0] - pos[i, 0] + offsets[p, 0]
    dy = pos[j, 1] - pos[i, 1] + offsets[p, 1]
    dz = pos[j, 2] - pos[i, 2] + offsets[p, 2]
    return i, j, dx, dy, dz, dx * dx + dy * dy + dz * dz


@numba.njit(cache=True)
def pairs_within(pos, i_idx, j_idx, offsets, rc2):
    """Indices into the list of the pairs closer than the cut-off, their vectors and squared lengths."""
    m = i_idx.shape[0]
    sel = np.empty(m, np.int64)
    d = np.empty((m, 3))
    rsq = np.empty(m)
    k = 0
    for p in range(m):
        i, j, dx, dy, dz, r2 = _pair_vector(pos, i_idx, j_idx, offsets, p)
        if r2 < rc2:
            sel[k] = p
            d[k, 0] = dx
            d[k, 1] = dy
            d[k, 2] = dz
            rsq[k] = r2
            k += 1
    return sel[:k], d[:k], rsq[:k]


@numba.njit(cache=True, inline="always")
def _add_pair(i, j, dx, dy, dz, e, fpair, energies, forces, virial):
    """Add one pair: half its energy to each atom, ``fpair * d`` to j and minus it to i, and the virial."""
    energies[i] += 0.5 * e
    energies[j] += 0.5 * e
    fx = fpair * dx
    fy = fpair * dy
    fz = fpair * dz
    forces[j, 0] += fx
    forces[j, 1] += fy
    forces[j, 2] += fz
    forces[i, 0] -= fx
    forces[i, 1] -= fy
    forces[i, 2] -= fz
    virial[0, 0] += dx * fx
    virial[0, 1] += dx * fy
    virial[0, 2] += dx * fz
    virial[1, 1] += dy * fy
    virial[1, 2] += dy * fz
    virial[2, 2] += dz * fz


@numba.njit(cache=True, inline="always")
def _tanh(z):
    # tanh through exp: the same function, about twice as fast as libm's tanh here
    return 1.0 - 2.0 / (math.exp(2.0 * z) + 1.0)


@numba.njit(cache=True)
def network_pairs_one_hidden(pos, i_idx, j_idx, offsets, rc2, sigma, epsilon, weights, biases, hid,
                             x_shift, x_scale, y_shift, y_scale, e_ref):
    """A 1xHx1 network in one pass over the list (the common case): energy, per-atom energies,
    forces and the virial, as :func:`accumulate` returns them."""
    n = pos.shape[0]
    forces = np.zeros((n, 3))
    energies = np.zeros(n)
    virial = np.zeros((3, 3))
    energy = 0.0
    # fold the input standardisation and tanh's factor 2 into the first layer
    a = np.empty(hid)
    c = np.empty(hid)
    for o in range(hid):
        a[o] = 2.0 * weights[o] * sigma / x_scale
        c[o] = 2.0 * (biases[o] - weights[o] * x_shift / x_scale)
    for p in range(i_idx.shape[0]):
        i, j, dx, dy, dz, r2 = _pair_vector(pos, i_idx, j_idx, offsets, p)
        if r2 >= rc2:
            continue
        rinv = 1.0 / math.sqrt(r2)
        y = biases[hid]
        dy_ = 0.0
        for o in range(hid):
            t = 1.0 - 2.0 / (math.exp(a[o] * rinv + c[o]) + 1.0)  # tanh of the hidden pre-activation
            w2 = weights[hid + o]
            y += w2 * t
            dy_ += w2 * (1.0 - t * t) * a[o]
        e = epsilon * (y * y_scale + y_shift - e_ref)
        # dy_ is d(output)/d(1/r) times 2; -(dE/dr) / r = (dE/d(1/r)) / r^3
        fpair = 0.5 * epsilon * dy_ * y_scale * rinv * rinv * rinv
        energy += e
        _add_pair(i, j, dx, dy, dz, e, fpair, energies, forces, virial)
    _symmetrise(virial)
    return energy, energies, forces, virial


@numba.njit(cache=True)
def analytic_pairs(pos, i_idx, j_idx, offsets, rc2, sigma, epsilon, e_ref):
    """The analytic 12-6 term in the same one-pass loop (LAMMPS lj/cut's arithmetic: no square root)."""
    n = pos.shape[0]
    forces = np.zeros((n, 3))
    energies = np.zeros(n)
    virial = np.zeros((3, 3))
    energy = 0.0
    s2 = sigma * sigma
    for p in range(i_idx.shape[0]):
        i, j, dx, dy, dz, r2 = _pair_vector(pos, i_idx, j_idx, offsets, p)
        if r2 >= rc2:
            continue
        r2inv = s2 / r2
        r6inv = r2inv * r2inv * r2inv
        e = 4.0 * epsilon * r6inv * (r6inv - 1.0) - e_ref
        fpair = 24.0 * epsilon * r6inv * (2.0 * r6inv - 1.0) / r2
        energy += e
        _add_pair(i, j, dx, dy, dz, e, fpair, energies, forces, virial)
    _symmetrise(virial)
    return energy, energies, forces, virial


@numba.njit(cache=True, inline="always")
def _symmetrise(virial):
    virial[1, 0] = virial[0, 1]
    virial[2, 0] = virial[0, 2]
    virial[2, 1] = virial[1, 2]


@numba.njit(cache=True)
def network_terms(rsq, sigma, epsilon, weights, biases, widths, x_shift, x_scale, y_shift, y_scale, e_ref):
    """Network pair energies and ``-(dE/dr) / r``; the network maps ``sigma / r`` to energy / epsilon.

    ``weights`` holds the layers' ``(n_in, n_out)`` blocks flattened row-major, ``biases`` theirs,
    ``widths`` the layer widths (input first).  Layer by layer over all pairs, carrying d/dx.
    """
    m = rsq.shape[0]
    e = np.empty(m)
    fpair = np.empty(m)
    nl = widths.shape[0] - 1
    if nl == 2:  # one hidden layer (the paper's 1xHx1 family): one pass, no scratch arrays
        hid = widths[1]
        for k in range(m):
            r = math.sqrt(rsq[k])
            x = (sigma / r - x_shift) / x_scale
            y = biases[hid]
            dy = 0.0
            for o in range(hid):
                t = _tanh(weights[o] * x + biases[o])
                y += weights[hid + o] * t
                dy += weights[hid + o] * (1.0 - t * t) * weights[o]
            e[k] = epsilon * (y * y_scale + y_shift - e_ref)
            fpair[k] = epsilon * dy * y_scale / x_scale * sigma / (rsq[k] * r)
        return e, fpair
    wmax = 0
    for k in range(widths.shape[0]):
        wmax = max(wmax, widths[k])
    h = np.empty((m, wmax))
    dh = np.empty((m, wmax))
    h2 = np.empty((m, wmax))
    dh2 = np.empty((m, wmax))
    r = np.sqrt(rsq)
    for k in range(m):
        h[k, 0] = (sigma / r[k] - x_shift) / x_scale
        dh[k, 0] = 1.0
    wo = 0
    bo = 0
    for layer in range(nl):
        nin = widths[layer]
        nout = widths[layer + 1]
        last = layer == nl - 1
        for k in range(m):
            for o in range(nout):
                z = biases[bo + o]
                dz = 0.0
                for q in range(nin):
                    w = weights[wo + q * nout + o]
                    z += h[k, q] * w
                    dz += dh[k, q] * w
                if last:
                    h2[k, o] = z
                    dh2[k, o] = dz
                else:
                    t = _tanh(z)
                    h2[k, o] = t
                    dh2[k, o] = (1.0 - t * t) * dz
        h, h2 = h2, h
        dh, dh2 = dh2, dh
        wo += nin * nout
        bo += nout
    for k in range(m):
        e[k] = epsilon * (h[k, 0] * y_scale + y_shift - e_ref)
        dedx = epsilon * dh[k, 0] * y_scale / x_scale
        # x = sigma / r: dE/dr = -dedx sigma / r^2, so -(dE/dr) / r = dedx sigma / r^3
        fpair[k] = dedx * sigma / (rsq[k] * r[k])
    return e, fpair


@numba.njit(cache=True)
def accumulate(n, i_idx, j_idx, sel, d, e, fpair):
    """Total energy, per-atom energies, forces and the 3x3 virial from per-pair terms."""
    forces = np.zeros((n, 3))
    energies = np.zeros(n)
    virial = np.zeros((3, 3))
    energy = 0.0
    for k in range(sel.shape[0]):
        energy += e[k]
        _add_pair(i_idx[sel[k]], j_idx[sel[k]], d[k, 0], d[k, 1], d[k, 2], e[k], fpair[k], energies, forces, virial)
    _symmetrise(virial)
    return energy, energies, forces, virial
