"""Compiled pair passes shared by the network and the analytic LJ term (one engine for both).

A force call is three passes over a half neighbour list whose image offsets were fixed at the
last list build: select the pairs inside the cut-off (the paper's branch stays here: the network
replaces the arithmetic, not the list), evaluate the pair term on them (network or analytic),
and accumulate energy, per-atom energies, forces and the virial.  The network is evaluated in
scalar code with its exact derivative carried through the layers, so forces are minus the
gradient of the energy the network defines.
"""
from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True)
def pairs_within(pos, i_idx, j_idx, offsets, rc2):
    """Indices into the list of the pairs closer than the cut-off, their vectors and squared lengths."""
    m = i_idx.shape[0]
    sel = np.empty(m, np.int64)
    d = np.empty((m, 3))
    rsq = np.empty(m)
    k = 0
    for p in range(m):
        i = i_idx[p]
        j = j_idx[p]
        dx = pos[j, 0] - pos[i, 0] + offsets[p, 0]
        dy = pos[j, 1] - pos[i, 1] + offsets[p, 1]
        dz = pos[j, 2] - pos[i, 2] + offsets[p, 2]
        r2 = dx * dx + dy * dy + dz * dz
        if r2 < rc2:
            sel[k] = p
            d[k, 0] = dx
            d[k, 1] = dy
            d[k, 2] = dz
            rsq[k] = r2
            k += 1
    return sel[:k], d[:k], rsq[:k]


@numba.njit(cache=True)
def lj_terms(rsq, sigma, epsilon, e_ref):
    """Analytic 12-6 pair energies and ``-(dE/dr) / r`` (LAMMPS lj/cut's arithmetic: no square root)."""
    m = rsq.shape[0]
    e = np.empty(m)
    fpair = np.empty(m)
    s2 = sigma * sigma
    for k in range(m):
        r2inv = s2 / rsq[k]
        r6inv = r2inv * r2inv * r2inv
        e[k] = 4.0 * epsilon * r6inv * (r6inv - 1.0) - e_ref
        fpair[k] = 24.0 * epsilon * r6inv * (2.0 * r6inv - 1.0) / rsq[k]
    return e, fpair


@numba.njit(cache=True, inline="always")
def _tanh(z):
    # tanh through exp: the same function, about twice as fast as libm's tanh here
    return 1.0 - 2.0 / (math.exp(2.0 * z) + 1.0)


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
    """Total energy, per-atom energies (half of each pair to each atom), forces and the 3x3 virial."""
    forces = np.zeros((n, 3))
    energies = np.zeros(n)
    virial = np.zeros((3, 3))
    energy = 0.0
    for k in range(sel.shape[0]):
        i = i_idx[sel[k]]
        j = j_idx[sel[k]]
        energy += e[k]
        energies[i] += 0.5 * e[k]
        energies[j] += 0.5 * e[k]
        for a in range(3):
            f = fpair[k] * d[k, a]  # force on j; minus it on i
            forces[j, a] += f
            forces[i, a] -= f
            for b in range(3):
                virial[a, b] += d[k, a] * fpair[k] * d[k, b]
    return energy, energies, forces, virial
