"""Compiled pair loops for the network and the analytic LJ term (one engine for both).

A force call walks a half neighbour list whose image offsets were fixed at the last list build,
skips pairs beyond the cut-off (the paper's branch stays in the loop: the network replaces the
arithmetic, not the list), evaluates the pair term and adds energy, per-atom energies, forces
and the virial (one shared inline routine).

Every loop runs in blocks of pairs: a scalar pass gathers the pairs inside the cut-off,
a branch-free pass evaluates the pair term on the whole block (so the compiler can use the
CPU's vector units), and a scalar pass scatters the forces.  tanh is written with an exp by
scaling and squaring (plain multiplies and adds, about 5e-14 relative error) because libm's exp
cannot be vectorised here (llvmlite is built without SVML).  Deeper networks go layer by layer
over each block.  The network's exact derivative is carried through the layers, so forces are
minus the gradient of the energy the network defines.
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
def _exp(z):
    """exp(z) for |z| <= 40 from multiplies and adds only (vectorisable): exp(z / 256) by its
    degree-10 Taylor polynomial, squared eight times.  Arguments are clamped to [-40, 40], where
    tanh(z / 2) already equals +-1 in double precision."""
    z = 40.0 if z > 40.0 else z
    z = -40.0 if z < -40.0 else z
    x = z * (1.0 / 256.0)
    p = 1.0 + x * (1.0 + x * (1.0 / 2 + x * (1.0 / 6 + x * (1.0 / 24 + x * (1.0 / 120 + x * (
        1.0 / 720 + x * (1.0 / 5040 + x * (1.0 / 40320 + x * (1.0 / 362880 + x * (1.0 / 3628800))))))))))
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    return p * p


@numba.njit(cache=True, inline="always")
def _tanh(z):
    return 1.0 - 2.0 / (_exp(2.0 * z) + 1.0)


BLOCK = 512  # pairs per block: the block's scratch arrays stay in the L1 cache


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _hidden_layer(s, n, a, c, w2, b2, y, dy):
    """Output ``y`` and ``dy`` (d output / d s, times 2) of a 1xHx1 tanh network at the first ``n``
    inputs ``s``, with the first layer folded into ``a * s + c`` (twice the pre-activation)."""
    for q in range(n):
        y[q] = b2
        dy[q] = 0.0
    for o in range(a.shape[0]):
        ao = a[o]
        co = c[o]
        wo = w2[o]
        for q in range(n):
            t = 1.0 - 2.0 / (_exp(ao * s[q] + co) + 1.0)
            y[q] += wo * t
            dy[q] += wo * ao * (1.0 - t * t)


@numba.njit(cache=True, inline="always")
def _gather(pos, i_idx, j_idx, offsets, rc2, p, bi, bj, bd, r2):
    """Fill the block with the next list entries from ``p`` that lie inside the cut-off: their
    atoms, vectors and squared lengths.  Returns the next list position and the block's size."""
    m = i_idx.shape[0]
    k = 0
    while p < m and k < bi.shape[0]:
        i, j, dx, dy, dz, rr = _pair_vector(pos, i_idx, j_idx, offsets, p)
        p += 1
        if rr < rc2:
            bi[k] = i
            bj[k] = j
            bd[k, 0] = dx
            bd[k, 1] = dy
            bd[k, 2] = dz
            r2[k] = rr
            k += 1
    return p, k


@numba.njit(cache=True, inline="always")
def _scatter(k, bi, bj, bd, e, fpair, energies, forces, virial):
    """Add the block's first ``k`` pairs to the per-atom arrays and the virial; returns their energy."""
    total = 0.0
    for q in range(k):
        total += e[q]
        _add_pair(bi[q], bj[q], bd[q, 0], bd[q, 1], bd[q, 2], e[q], fpair[q], energies, forces, virial)
    return total


@numba.njit(cache=True, inline="always")
def _block_buffers():
    """Scratch arrays of one block: atoms i and j, pair vectors, and three per-pair values."""
    return (np.empty(BLOCK, np.int64), np.empty(BLOCK, np.int64), np.empty((BLOCK, 3)), np.empty(BLOCK),
            np.empty(BLOCK), np.empty(BLOCK))


@numba.njit(cache=True, error_model="numpy")
def network_pairs_one_hidden(pos, i_idx, j_idx, offsets, rc2, sigma, epsilon, weights, biases, hid,
                             x_shift, x_scale, y_shift, y_scale, e_ref):
    """A 1xHx1 network over the list in blocks (the common case): energy, per-atom energies,
    forces and the virial."""
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
    w2 = weights[hid:2 * hid].copy()
    bi, bj, bd, s, y, dy = _block_buffers()
    p = 0
    while p < i_idx.shape[0]:
        p, k = _gather(pos, i_idx, j_idx, offsets, rc2, p, bi, bj, bd, s)
        for q in range(k):
            s[q] = 1.0 / math.sqrt(s[q])
        _hidden_layer(s, k, a, c, w2, biases[hid], y, dy)
        for q in range(k):
            rinv = s[q]
            y[q] = epsilon * (y[q] * y_scale + y_shift - e_ref)
            # dy is d(output)/d(1/r) times 2; -(dE/dr) / r = (dE/d(1/r)) / r^3
            dy[q] = 0.5 * epsilon * dy[q] * y_scale * rinv * rinv * rinv
        energy += _scatter(k, bi, bj, bd, y, dy, energies, forces, virial)
    _symmetrise(virial)
    return energy, energies, forces, virial


@numba.njit(cache=True, error_model="numpy")
def analytic_pairs(pos, i_idx, j_idx, offsets, rc2, sigma, epsilon, e_ref):
    """The analytic 12-6 term in the same blocked loop (LAMMPS lj/cut's arithmetic: no square root)."""
    n = pos.shape[0]
    forces = np.zeros((n, 3))
    energies = np.zeros(n)
    virial = np.zeros((3, 3))
    energy = 0.0
    s2 = sigma * sigma
    bi, bj, bd, r2, e, fpair = _block_buffers()
    p = 0
    while p < i_idx.shape[0]:
        p, k = _gather(pos, i_idx, j_idx, offsets, rc2, p, bi, bj, bd, r2)
        for q in range(k):
            r2inv = s2 / r2[q]
            r6inv = r2inv * r2inv * r2inv
            e[q] = 4.0 * epsilon * r6inv * (r6inv - 1.0) - e_ref
            fpair[q] = 24.0 * epsilon * r6inv * (2.0 * r6inv - 1.0) / r2[q]
        energy += _scatter(k, bi, bj, bd, e, fpair, energies, forces, virial)
    _symmetrise(virial)
    return energy, energies, forces, virial


@numba.njit(cache=True, inline="always")
def _symmetrise(virial):
    virial[1, 0] = virial[0, 1]
    virial[2, 0] = virial[0, 2]
    virial[2, 1] = virial[1, 2]


@numba.njit(cache=True, error_model="numpy")
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


@numba.njit(cache=True, error_model="numpy")
def network_pairs_deep(pos, i_idx, j_idx, offsets, rc2, sigma, epsilon, weights, biases, widths,
                       x_shift, x_scale, y_shift, y_scale, e_ref):
    """Any network depth over the list in blocks (:func:`network_terms` per block): energy,
    per-atom energies, forces and the virial."""
    n = pos.shape[0]
    forces = np.zeros((n, 3))
    energies = np.zeros(n)
    virial = np.zeros((3, 3))
    energy = 0.0
    bi, bj, bd, r2, _, _ = _block_buffers()
    p = 0
    while p < i_idx.shape[0]:
        p, k = _gather(pos, i_idx, j_idx, offsets, rc2, p, bi, bj, bd, r2)
        e, fpair = network_terms(r2[:k], sigma, epsilon, weights, biases, widths, x_shift, x_scale, y_shift,
                                 y_scale, e_ref)
        energy += _scatter(k, bi, bj, bd, e, fpair, energies, forces, virial)
    _symmetrise(virial)
    return energy, energies, forces, virial
