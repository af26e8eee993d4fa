"""Compiled kernels of the PLS engine (Numba, cached on disk).

:mod:`bayesmlm.freq.pls` lays a model out once (:class:`~bayesmlm.freq.pls.ProfiledDeviance`);
per deviance evaluation these kernels

* fill the relative covariance templates from theta (:func:`assemble`),
* factor the first factor's block-diagonal cross-product level by level in closed
  form (``B_k = T1' A11_k T1 + I``, a p1 x p1 Cholesky each),
* form the Schur complement of everything else,
  ``Lambda_r'(A22 - A21 Lambda1 B^-1 Lambda1' A21')Lambda_r + I``, in place in a
  preallocated buffer,
* and factor its sparse head (:func:`head_cholesky`); the dense tail goes to
  LAPACK's ``dpotrf``.

The rest system's scalar rows ``0..m-1`` are split at ``H``: columns ``< H`` (the
"head", in a fill-reducing order found once by :func:`minimum_degree`) are stored
sparse, in CSC with a fixed pattern (``colptr, rowidx``; diagonal first, rows
ascending), the rest (the "tail", always holding X and y) as a dense C-order lower
triangle of size ``T = m - H`` after the head's ``nnz_h`` values in the same array.
``H = 0`` is the dense layout. Consecutive scalar rows of one level of a factor form
a "level" (its template size long); the fixed effects and the response are the last
level (the "border", unscaled). Nothing is allocated per evaluation.

Examples
--------
>>> import numpy as np
>>> A = np.array([[4.0, 2.0, 0.0], [2.0, 5.0, 1.0], [0.0, 1.0, 3.0]])
>>> colptr = np.array([0, 2, 4, 5]); rowidx = np.array([0, 1, 1, 2, 2])
>>> Lx = A[rowidx, np.repeat(np.arange(3), np.diff(colptr))].copy()
>>> rptr, rcol, rpos = row_structure(colptr, rowidx)
>>> bool(head_cholesky(Lx, colptr, rowidx, rptr, rcol, rpos, np.zeros(3), 3, 3, 5))
True
>>> np.allclose(Lx, np.linalg.cholesky(A)[rowidx, np.repeat(np.arange(3), np.diff(colptr))])
True
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = [
    "assemble",
    "head_cholesky",
    "row_structure",
    "minimum_degree",
    "first_block_modes",
    "back_solve",
    "block_keys",
    "clique_adjacency",
    "lower_inverse",
    "spd_solve",
    "pack",
    "assemble_packed",
    "evaluate_packed",
]

_JIT = dict(cache=True, nogil=True, fastmath=False, boundscheck=False)


@nb.njit(**_JIT)
def _fill_templates(theta, tpos, Tflat):
    Tflat[:] = 0.0
    for i in range(theta.shape[0]):
        Tflat[tpos[i]] = theta[i]


@nb.njit(**_JIT)
def assemble(
    theta,
    tpos,
    Tflat,
    p1,
    t1ofs,
    A11,
    lev_ptr,
    lev_rows,
    lev_vals,
    row_lvl,
    row_c,
    lvl_start,
    lvl_size,
    lvl_tofs,
    pr_u,
    pr_v,
    pr_ofs,
    pr_vals,
    pr_pos,
    diag_pos,
    q_rest,
    m,
    H,
    nnz_h,
    dense_w,
    out,
    inc_ptr,
    inc_k,
    inc_a,
    colptr,
    rowidx,
    colmap,
    L11,
    Wall,
    WdT,
):
    """Fill ``out`` with the rest system at theta; return ``log|L11|^2`` (NaN: not positive definite).

    ``out`` holds the head's CSC values (``nnz_h``), then the dense tail (``T x T``,
    lower triangle written). A22's level-pair blocks land at ``pr_pos``, the
    penalty at ``diag_pos``. ``L11`` receives the first factor's per-level Cholesky
    factors, ``Wall`` the rows of ``L21`` level by level (``lev_vals``' shape). With
    ``dense_w`` (dense layout, dense ``L21``) the update ``-L21 L21'`` is left to
    one BLAS ``syrk`` by the caller: ``WdT`` (n1 p1 x m) receives ``L21'``.
    ``inc_*`` list, per rest row, the first-factor levels that touch it (level,
    position in ``lev_rows``); ``colmap`` is scratch of length ``m``.
    """
    _fill_templates(theta, tpos, Tflat)
    T = m - H
    out[:nnz_h] = 0.0
    for i in range(T):
        out[nnz_h + i * T : nnz_h + i * T + i + 1] = 0.0
    # scaled cross-products of the rest: T_u' A_uv T_v per nonzero level pair (u >= v)
    for t in range(pr_u.shape[0]):
        u = pr_u[t]
        v = pr_v[t]
        su = lvl_size[u]
        sv = lvl_size[v]
        tu = lvl_tofs[u]
        tv = lvl_tofs[v]
        base = pr_ofs[t]
        for a in range(su):
            for b in range(sv):
                if u == v and b > a:
                    continue
                s = 0.0
                ahi = su if tu >= 0 else a + 1
                bhi = sv if tv >= 0 else b + 1
                for a2 in range(a, ahi):
                    wa = Tflat[tu + a2 * su + a] if tu >= 0 else 1.0
                    if wa == 0.0:
                        continue
                    acc = 0.0
                    for b2 in range(b, bhi):
                        wb = Tflat[tv + b2 * sv + b] if tv >= 0 else 1.0
                        acc += pr_vals[base + a2 * sv + b2] * wb
                    s += wa * acc
                out[pr_pos[base + a * sv + b]] += s
    for i in range(q_rest):
        out[diag_pos[i]] += 1.0
    # the first factor: B_k = T1' A11_k T1 + I = L_k L_k', L21 = Lambda_r' A21 T1 L_k^-T
    n1 = L11.shape[0]
    logdet = 0.0
    B = np.empty((p1, p1))
    F = np.empty((p1, p1))
    for k in range(n1):
        for i in range(p1):
            for j in range(i + 1):
                s = 0.0
                for a in range(i, p1):
                    ta = Tflat[t1ofs + a * p1 + i]
                    if ta == 0.0:
                        continue
                    acc = 0.0
                    for b in range(j, p1):
                        acc += A11[k, a, b] * Tflat[t1ofs + b * p1 + j]
                    s += ta * acc
                if i == j:
                    s += 1.0
                B[i, j] = s
        for j in range(p1):
            d = B[j, j]
            for c in range(j):
                d -= L11[k, j, c] * L11[k, j, c]
            if not d > 0.0:
                return np.nan
            d = np.sqrt(d)
            L11[k, j, j] = d
            logdet += 2.0 * np.log(d)
            for i in range(j + 1, p1):
                s = B[i, j]
                for c in range(j):
                    s -= L11[k, i, c] * L11[k, j, c]
                L11[k, i, j] = s / d
            for i in range(j):
                L11[k, i, j] = 0.0
        # F = T1 L^-T: rows solve L f' = T1[r]'
        for r in range(p1):
            for j in range(p1):
                s = Tflat[t1ofs + r * p1 + j]
                for c in range(j):
                    s -= L11[k, j, c] * F[r, c]
                F[r, j] = s / L11[k, j, j]
        start = lev_ptr[k]
        stop = lev_ptr[k + 1]
        # G = V_k F into Wall, then Lambda_r' on the rows (within each rest level), in place
        for a in range(start, stop):
            for j in range(p1):
                s = 0.0
                for c in range(p1):
                    s += lev_vals[a, c] * F[c, j]
                Wall[a, j] = s
        for a in range(start, stop):  # rows ascend; T lower: row (level start + c) needs rows >= it
            i = lev_rows[a]
            lv = row_lvl[i]
            tofs = lvl_tofs[lv]
            if tofs < 0:
                continue
            c = row_c[i]
            sz = lvl_size[lv]
            if sz == 1:
                t0 = Tflat[tofs]
                for j in range(p1):
                    Wall[a, j] *= t0
            else:
                for j in range(p1):
                    s = 0.0
                    for a2 in range(c, sz):
                        s += Tflat[tofs + a2 * sz + c] * Wall[a - c + a2, j]
                    Wall[a, j] = s
        if dense_w:
            for a in range(start, stop):
                i = lev_rows[a]
                for j in range(p1):
                    WdT[k * p1 + j, i] = Wall[a, j]
    if dense_w:
        return logdet
    # head columns (j < H), column by column: the column's positions through colmap
    for j in range(H):
        for p in range(colptr[j], colptr[j + 1]):
            colmap[rowidx[p]] = p
        for t in range(inc_ptr[j], inc_ptr[j + 1]):
            k = inc_k[t]
            b = inc_a[t]
            for a in range(b, lev_ptr[k + 1]):
                s = 0.0
                for c in range(p1):
                    s += Wall[a, c] * Wall[b, c]
                out[colmap[lev_rows[a]]] -= s
    # the dense tail, row by row (one row of the tail stays in cache)
    for i in range(H, m):
        base = nnz_h + (i - H) * T - H
        for t in range(inc_ptr[i], inc_ptr[i + 1]):
            a = inc_a[t]
            b = lev_ptr[inc_k[t]]
            while lev_rows[b] < H:
                b += 1
            if p1 == 1:
                wa = Wall[a, 0]
                for bb in range(b, a + 1):
                    out[base + lev_rows[bb]] -= wa * Wall[bb, 0]
            else:
                for bb in range(b, a + 1):
                    s = 0.0
                    for c in range(p1):
                        s += Wall[a, c] * Wall[bb, c]
                    out[base + lev_rows[bb]] -= s
    return logdet


@nb.njit(**_JIT)
def head_cholesky(out, colptr, rowidx, rptr, rcol, rpos, work, H, m, nnz_h):
    """Factor the sparse head in place (left-looking) and update the dense tail with it.

    ``rptr, rcol, rpos`` list, per row ``j < H``, the columns ``k < j`` with ``L[j, k]``
    in the pattern and that entry's position. ``work`` is a zeroed vector of
    length ``m`` (left zeroed). The tail becomes ``A_tt - L_th L_th'``, ready for
    ``dpotrf``. Returns False when the head is not positive definite.
    """
    for j in range(H):
        for p in range(colptr[j], colptr[j + 1]):
            work[rowidx[p]] = out[p]
        for t in range(rptr[j], rptr[j + 1]):
            k = rcol[t]
            pjk = rpos[t]
            ljk = out[pjk]
            if ljk == 0.0:
                continue
            for p in range(pjk, colptr[k + 1]):
                work[rowidx[p]] -= out[p] * ljk
        d = work[j]
        if not d > 0.0:
            for p in range(colptr[j], colptr[j + 1]):
                work[rowidx[p]] = 0.0
            return False
        d = np.sqrt(d)
        out[colptr[j]] = d
        work[j] = 0.0
        for p in range(colptr[j] + 1, colptr[j + 1]):
            i = rowidx[p]
            out[p] = work[i] / d
            work[i] = 0.0
    # tail Schur complement: minus the outer products of the head columns' tail parts
    T = m - H
    for k in range(H):
        start = colptr[k + 1]
        while start > colptr[k] and rowidx[start - 1] >= H:
            start -= 1
        for a in range(start, colptr[k + 1]):
            la = out[a]
            if la == 0.0:
                continue
            base = nnz_h + (rowidx[a] - H) * T - H
            for b in range(start, a + 1):
                out[base + rowidx[b]] -= la * out[b]
    return True


def row_structure(colptr: np.ndarray, rowidx: np.ndarray):
    """Row-wise view of a lower CSC pattern: per row ``j`` (of those with a column), the columns
    left of the diagonal with an entry in row ``j``, and that entry's position."""
    m = len(colptr) - 1
    cols = np.repeat(np.arange(m), np.diff(colptr))
    pos = np.arange(len(rowidx))
    off = (rowidx != cols) & (rowidx < m)
    rows, cols, pos = rowidx[off], cols[off], pos[off]
    order = np.lexsort((cols, rows))
    rptr = np.zeros(m + 1, dtype=np.int64)
    np.add.at(rptr, rows + 1, 1)
    return np.cumsum(rptr), cols[order].astype(np.int64), pos[order].astype(np.int64)


@nb.njit(**_JIT)
def back_solve(out, colptr, rowidx, H, m, nnz_h, n):
    """Solve ``L[:n, :n]' x = l`` with ``l = L[n, :n]`` (the response row; ``n = m - 1``)."""
    T = m - H
    x = np.empty(n)
    for j in range(n):
        if j < H:
            x[j] = out[colptr[j + 1] - 1]  # row n = m - 1 is the last entry of every head column
        else:
            x[j] = out[nnz_h + (n - H) * T + (j - H)]
    for j in range(n - 1, -1, -1):
        s = x[j]
        if j < H:
            for p in range(colptr[j] + 1, colptr[j + 1]):
                i = rowidx[p]
                if i < n:
                    s -= out[p] * x[i]
            x[j] = s / out[colptr[j]]
        else:
            for i in range(j + 1, n):
                s -= out[nnz_h + (i - H) * T + (j - H)] * x[i]
            x[j] = s / out[nnz_h + (j - H) * T + (j - H)]
    return x


@nb.njit(**_JIT)
def first_block_modes(Tflat, p1, t1ofs, L11, lev_ptr, lev_rows, lev_vals, z, y_row):
    """Conditional modes of the first factor: ``T1 B_k^-1 T1' (v_y - V_k' z)`` per level.

    ``z`` holds ``Lambda_r u`` of the rest effects and beta (scalar-row order); the
    response row ``y_row`` of each level's ``V_k`` is the right-hand side.
    """
    n1 = L11.shape[0]
    out = np.zeros((n1, p1))
    r = np.empty(p1)
    for k in range(n1):
        r[:] = 0.0
        for a in range(lev_ptr[k], lev_ptr[k + 1]):
            i = lev_rows[a]
            if i == y_row:
                for c in range(p1):
                    r[c] += lev_vals[a, c]
            else:
                for c in range(p1):
                    r[c] -= lev_vals[a, c] * z[i]
        # t = T1' r
        t = np.zeros(p1)
        for c in range(p1):
            s = 0.0
            for a in range(c, p1):
                s += Tflat[t1ofs + a * p1 + c] * r[a]
            t[c] = s
        # B^-1 t: L w = t, L' x = w
        for j in range(p1):
            s = t[j]
            for c in range(j):
                s -= L11[k, j, c] * t[c]
            t[j] = s / L11[k, j, j]
        for j in range(p1 - 1, -1, -1):
            s = t[j]
            for c in range(j + 1, p1):
                s -= L11[k, c, j] * t[c]
            t[j] = s / L11[k, j, j]
        for a in range(p1):
            s = 0.0
            for c in range(a + 1):
                s += Tflat[t1ofs + a * p1 + c] * t[c]
            out[k, a] = s
    return out


@nb.njit(**_JIT)
def minimum_degree(adj, weight, budget):
    """Minimum-degree elimination order of a symmetric boolean adjacency (modified in place).

    Degrees count the scalar rows (``weight``) of the neighbours. Elimination
    stops when what remains is at least half dense (the minimum degree reaches
    half the remaining rows: a dense tail from there) or when the work
    ``sum |nbrs|^2`` passes ``budget``. Returns the order of the eliminated nodes,
    their neighbours when eliminated (CSR: ``ptr``, ``nbr``) and how many were eliminated.
    """
    n = adj.shape[0]
    deg = np.zeros(n, dtype=np.int64)
    remaining = 0
    for i in range(n):
        remaining += weight[i]
        s = 0
        for j in range(n):
            if adj[i, j] and i != j:
                s += weight[j]
        deg[i] = s
    done = np.zeros(n, dtype=np.bool_)
    order = np.empty(n, dtype=np.int64)
    ptr = np.zeros(n + 1, dtype=np.int64)
    cap = 4 * n + 16
    nbr = np.empty(cap, dtype=np.int64)
    used = 0
    work = 0.0
    buf = np.empty(n, dtype=np.int64)
    for step in range(n):
        best = -1
        bd = 0
        for i in range(n):
            if not done[i] and (best < 0 or deg[i] < bd):
                best = i
                bd = deg[i]
        if 2 * bd >= remaining - weight[best]:
            return order, ptr, nbr[:used], step
        v = best
        cnt = 0
        for j in range(n):
            if adj[v, j] and not done[j] and j != v:
                buf[cnt] = j
                cnt += 1
        work += float(cnt) * float(cnt)
        if work > budget:
            return order, ptr, nbr[:used], step
        done[v] = True
        remaining -= weight[v]
        order[step] = v
        if used + cnt > cap:
            cap = 2 * (used + cnt)
            grown = np.empty(cap, dtype=np.int64)
            grown[:used] = nbr[:used]
            nbr = grown
        nbr[used : used + cnt] = buf[:cnt]
        used += cnt
        ptr[step + 1] = used
        for a in range(cnt):
            x = buf[a]
            deg[x] -= weight[v]
            adj[x, v] = False
            for b in range(cnt):
                y = buf[b]
                if x != y and not adj[x, y]:
                    adj[x, y] = True
                    deg[x] += weight[y]
    return order, ptr, nbr[:used], n


@nb.njit(**_JIT)
def block_keys(pr_u, pr_v, pr_ofs, lvl_start, lvl_size, m, total):
    """``col * m + row`` of every entry of the level-pair blocks (-1 above the diagonal of diagonal blocks)."""
    keys = np.full(total, -1, dtype=np.int64)
    for t in range(pr_u.shape[0]):
        u = pr_u[t]
        v = pr_v[t]
        su = lvl_size[u]
        sv = lvl_size[v]
        for a in range(su):
            for b in range(sv):
                if u == v and b > a:
                    continue
                keys[pr_ofs[t] + a * sv + b] = (lvl_start[v] + b) * m + lvl_start[u] + a
    return keys


@nb.njit(**_JIT)
def clique_adjacency(n_levels, lev_lvl_ptr, lev_lvls, pr_u, pr_v):
    """Boolean level graph of the rest system: nonzero level pairs plus each first-factor level's clique."""
    adj = np.zeros((n_levels, n_levels), dtype=np.bool_)
    for t in range(pr_u.shape[0]):
        u = pr_u[t]
        v = pr_v[t]
        if u < n_levels and v < n_levels:
            adj[u, v] = True
            adj[v, u] = True
    for k in range(lev_lvl_ptr.shape[0] - 1):
        for a in range(lev_lvl_ptr[k], lev_lvl_ptr[k + 1]):
            x = lev_lvls[a]
            if x >= n_levels:
                continue
            for b in range(lev_lvl_ptr[k], lev_lvl_ptr[k + 1]):
                y = lev_lvls[b]
                if y < n_levels:
                    adj[x, y] = True
    for i in range(n_levels):
        adj[i, i] = False
    return adj


@nb.njit(**_JIT)
def lower_inverse(R):
    """Inverse of a lower-triangular matrix by substitution (no BLAS: small matrices, any thread setting)."""
    p = R.shape[0]
    out = np.zeros((p, p))
    for j in range(p):
        out[j, j] = 1.0 / R[j, j]
        for i in range(j + 1, p):
            s = 0.0
            for k in range(j, i):
                s += R[i, k] * out[k, j]
            out[i, j] = -s / R[i, i]
    return out


@nb.njit(**_JIT)
def spd_solve(A, b):
    """``A^-1 b`` for a small symmetric positive definite ``A`` by Cholesky (no BLAS)."""
    p = A.shape[0]
    L = np.zeros((p, p))
    for j in range(p):
        d = A[j, j]
        for c in range(j):
            d -= L[j, c] * L[j, c]
        d = np.sqrt(d) if d > 0.0 else np.nan
        L[j, j] = d
        for i in range(j + 1, p):
            s = A[i, j]
            for c in range(j):
                s -= L[i, c] * L[j, c]
            L[i, j] = s / d
    x = b.copy()
    for j in range(p):
        s = x[j]
        for c in range(j):
            s -= L[j, c] * x[c]
        x[j] = s / L[j, j]
    for j in range(p - 1, -1, -1):
        s = x[j]
        for c in range(j + 1, p):
            s -= L[c, j] * x[c]
        x[j] = s / L[j, j]
    return x


# -- packed arguments ------------------------------------------------------------------------
# Numba checks the type of every argument of every call (about 60 ns each): with its arrays
# gathered into one integer and one float buffer, an evaluation passes six arguments, not 43.
# The order of the arrays in the buffers is fixed here and in ProfiledDeviance._pack.

PACKED_INTS = (
    "tpos", "lev_ptr", "lev_rows", "row_lvl", "row_c", "lvl_start", "lvl_size", "lvl_tofs", "pr_u", "pr_v",
    "pr_ofs", "pr_pos", "diag_pos", "inc_ptr", "inc_k", "inc_a", "colptr", "rowidx", "colmap", "rptr", "rcol", "rpos",
)  # fmt: skip
PACKED_FLOATS = ("Tflat", "A11", "lev_vals", "pr_vals", "out", "L11", "Wall", "WdT", "work")
PACKED_DIMS = (
    "p1", "t1ofs", "q_rest", "m", "H", "nnz_h", "dense_w", "n", "p", "reml", "n1", "R", "wdt_rows", "wdt_cols",
)  # fmt: skip


def pack(arrays: list[np.ndarray], dtype) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Copy ``arrays`` into one buffer: ``(buffer, offsets, views)``, each view shaped as its array.

    Examples
    --------
    >>> buf, offsets, (a, b) = pack([np.arange(3), np.ones((2, 2), dtype=np.int64)], np.int64)
    >>> buf.tolist(), offsets.tolist(), b.shape, bool(np.shares_memory(a, buf))
    ([0, 1, 2, 1, 1, 1, 1], [0, 3, 7], (2, 2), True)
    """
    bounds = [0]
    for a in arrays:
        bounds.append(bounds[-1] + a.size)
    buf = np.concatenate([a.reshape(-1) for a in arrays], dtype=dtype, casting="unsafe") if arrays else np.empty(0, dtype=dtype)
    views = [buf[start:stop].reshape(a.shape) for a, start, stop in zip(arrays, bounds[:-1], bounds[1:])]
    return buf, np.array(bounds, dtype=np.int64), views


@nb.njit(**_JIT)
def _unpack(ib, io, fb, fo, dims):
    """The arguments of :func:`assemble`, cut out of the packed arrays (:func:`evaluate_packed` reads some
    of them by position: ``q_rest`` is 19, ``out`` 24, ``colptr`` 28, ``WdT`` 33)."""
    p1, n1, R = dims[0], dims[10], dims[11]
    return (
        ib[io[0] : io[1]], fb[fo[0] : fo[1]], p1, dims[1], fb[fo[1] : fo[2]].reshape((n1, p1, p1)),
        ib[io[1] : io[2]], ib[io[2] : io[3]], fb[fo[2] : fo[3]].reshape((R, p1)), ib[io[3] : io[4]],
        ib[io[4] : io[5]], ib[io[5] : io[6]], ib[io[6] : io[7]], ib[io[7] : io[8]], ib[io[8] : io[9]],
        ib[io[9] : io[10]], ib[io[10] : io[11]], fb[fo[3] : fo[4]], ib[io[11] : io[12]], ib[io[12] : io[13]],
        dims[2], dims[3], dims[4], dims[5], dims[6] != 0, fb[fo[4] : fo[5]], ib[io[13] : io[14]],
        ib[io[14] : io[15]], ib[io[15] : io[16]], ib[io[16] : io[17]], ib[io[17] : io[18]], ib[io[18] : io[19]],
        fb[fo[5] : fo[6]].reshape((n1, p1, p1)), fb[fo[6] : fo[7]].reshape((R, p1)),
        fb[fo[7] : fo[8]].reshape((dims[12], dims[13])),
    )  # fmt: skip


@nb.njit(**_JIT)
def assemble_packed(theta, ib, io, fb, fo, dims):
    """:func:`assemble` on packed arguments (:func:`pack`, ``PACKED_*``)."""
    return assemble(theta, *_unpack(ib, io, fb, fo, dims))


@nb.njit(**_JIT)
def evaluate_packed(theta, ib, io, fb, fo, dims):
    """One whole evaluation for a small dense tail, on packed arguments (:func:`pack`, ``PACKED_*``): one
    call, no per-step Python overhead.

    :func:`assemble`, the sparse head, ``-L21 L21'`` by loops when ``dense_w``, the
    tail's Cholesky (left in ``out``) and the criterion. Returns ``(criterion,
    log|L|^2, log|RX|^2, pwrss)``, NaN criterion where not positive definite. Written here
    rather than in a function taking the unpacked arguments: Numba re-optimises a callee's code
    in every caller, so one level less is a second less of first-run compilation.
    """
    args = _unpack(ib, io, fb, fo, dims)
    q_rest, m, H, nnz_h, dense_w, out = args[19], args[20], args[21], args[22], args[23], args[24]
    colptr, rowidx, WdT = args[28], args[29], args[33]
    rptr, rcol, rpos, work = ib[io[19] : io[20]], ib[io[20] : io[21]], ib[io[21] : io[22]], fb[fo[8] : fo[9]]
    n, p, reml = dims[7], dims[8], dims[9] != 0
    logdet1 = assemble(theta, *args)
    if not np.isfinite(logdet1):
        return np.nan, 0.0, 0.0, 0.0
    if H > 0 and not head_cholesky(out, colptr, rowidx, rptr, rcol, rpos, work, H, m, nnz_h):
        return np.nan, 0.0, 0.0, 0.0
    T = m - H
    tail = out[nnz_h:].reshape((T, T))
    if dense_w:
        K = WdT.shape[0]
        for i in range(T):
            for j in range(i + 1):
                s = 0.0
                for k in range(K):
                    s += WdT[k, i] * WdT[k, j]
                tail[i, j] -= s
    # unblocked Cholesky of the tail's lower triangle, in place
    for j in range(T):
        d = tail[j, j]
        for c in range(j):
            d -= tail[j, c] * tail[j, c]
        if not d > 0.0:
            return np.nan, 0.0, 0.0, 0.0
        d = np.sqrt(d)
        tail[j, j] = d
        for i in range(j + 1, T):
            s = tail[i, j]
            for c in range(j):
                s -= tail[i, c] * tail[j, c]
            tail[i, j] = s / d
    r = q_rest
    pe = r + p
    logdet_L = logdet1
    for j in range(H):
        logdet_L += 2.0 * np.log(out[colptr[j]])
    for i in range(H, r):
        logdet_L += 2.0 * np.log(tail[i - H, i - H])
    logdet_RX = 0.0
    for i in range(r, pe):
        logdet_RX += 2.0 * np.log(tail[i - H, i - H])
    pwrss = tail[pe - H, pe - H] ** 2
    if reml:
        dof = n - p
        dev = logdet_L + logdet_RX + dof * (1.0 + np.log(2.0 * np.pi) + np.log(pwrss / dof))
    else:
        dev = logdet_L + n * (1.0 + np.log(2.0 * np.pi) + np.log(pwrss / n))
    return dev, logdet_L, logdet_RX, pwrss
