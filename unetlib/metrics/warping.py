"""The warping error of one slice (U-Net Table 1), as Fiji's ``WarpingError`` computed it in 2015.

Jain et al., "Boundary learning by optimization with topological
constraints", CVPR 2010: the ground-truth cell mask is warped towards the
thresholded prediction by flipping mismatched *simple points* (pixels whose
flip changes no topology; cell 4-adjacency, membrane 8-adjacency), in
decreasing order of ``|prob - t|``, pass after pass; the mismatches left are
classified, and only topological splits and merges count.

Fiji's flip order within a pass is that of Java 6's merge sort under the
January 2015 comparator, replicated here (:func:`_java6_merge_sort`) so that
ties fall as they did on the leaderboard. The pooling over slices and
thresholds, and the checks of the inputs, are in
:func:`unetlib.metrics.isbi2012.warping_error_curve`; the specification is
``docs/metrics.md`` (A.5).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from scipy import ndimage

__all__ = ["SORT_MODES", "SIMPLE_POINT_TABLE", "warping_counts"]

#: The flip orders within a pass: ``"jan2015"`` (the leaderboard's), ``"float"`` (Fiji from June 2015 on)
SORT_MODES = ("jan2015", "float")


def warping_counts(
    prob: np.ndarray,
    gt_cell: np.ndarray,
    thresholds: np.ndarray,
    sort_mode: str,
    radius: int,
    uniform_slice_quirk: bool,
) -> np.ndarray:
    """(splits, merges) per threshold for one slice, shape (T, 2).

    ``prob`` is one (H, W) slice of P(cell), ``gt_cell`` its boolean cell mask,
    both checked already (:func:`unetlib.metrics.isbi2012.warping_error_curve`
    is the public entry); ``sort_mode`` is one of :data:`SORT_MODES`. At each
    threshold: warp the ground truth towards the thresholded prediction, then
    count the split and merge pixels among the mismatches left.
    """
    out = np.zeros((len(thresholds), 2), dtype=np.int64)
    if uniform_slice_quirk and gt_cell.all():
        return out  # Fiji scores every mismatch of such a slice as an object addition
    p = prob.astype(np.float64)
    width = p.shape[1] + 2
    ground_truth = np.pad(gt_cell.astype(np.uint8), 1)
    for k, t in enumerate(thresholds):
        target = np.pad((p > t).astype(np.uint8), 1).ravel()
        zval = np.pad(np.abs(p - t).astype(np.float32), 1).ravel()
        labels = ground_truth.ravel().copy()
        mismatches = _warp_descent(labels, target, zval, width, sort_mode == "jan2015", SIMPLE_POINT_TABLE)
        components = ndimage.label(labels.reshape(ground_truth.shape))[0].ravel()
        out[k] = _classify(labels, components, mismatches, width, int(radius))
    return out


# ---------------------------------------------------------------------------
# Simple points, the flip order, the descent and the classification
# ---------------------------------------------------------------------------

# the 8 neighbours (dy, dx); bit b of a configuration code is neighbour b
_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def _ring_components(members: list[int], adjacent) -> list[set[int]]:
    """Connected components of the neighbours ``members`` under ``adjacent(a, b)``."""
    left, comps = set(members), []
    while left:
        stack, comp = [left.pop()], set()
        while stack:
            a = stack.pop()
            comp.add(a)
            for b in list(left):
                if adjacent(a, b):
                    left.discard(b)
                    stack.append(b)
        comps.append(comp)
    return comps


def _simple_point_table() -> np.ndarray:
    """For each of the 256 neighbour configurations: is the centre a simple point?

    Cell (1) uses 4-adjacency, membrane (0) 8-adjacency. T4 counts the
    4-connected components of cell neighbours that touch an edge-neighbour;
    T8 counts the 8-connected components of membrane neighbours. Simple iff
    T4 == 1 and T8 == 1.
    """
    def dist(a, b):
        return abs(_NEIGHBOURS[a][0] - _NEIGHBOURS[b][0]), abs(_NEIGHBOURS[a][1] - _NEIGHBOURS[b][1])

    def adj4(a, b):
        return sum(dist(a, b)) == 1

    def adj8(a, b):
        return max(dist(a, b)) == 1

    edge = {b for b, (dy, dx) in enumerate(_NEIGHBOURS) if abs(dy) + abs(dx) == 1}
    table = np.zeros(256, dtype=np.uint8)
    for code in range(256):
        cell = [b for b in range(8) if code >> b & 1]
        membrane = [b for b in range(8) if not code >> b & 1]
        t4 = sum(1 for c in _ring_components(cell, adj4) if c & edge)
        t8 = len(_ring_components(membrane, adj8))
        table[code] = t4 == 1 and t8 == 1
    return table


SIMPLE_POINT_TABLE = _simple_point_table()


@njit(cache=True, nogil=True)
def _compare(z1, z2, jan2015):  # pragma: no cover - numba
    """Descending comparator on float32 zvals; > 0 means z1 sorts after z2."""
    if jan2015:
        # (int)((o2.z - o1.z) * 10000) in float32, truncated toward zero
        return int((z2 - z1) * np.float32(10000.0))
    if z2 > z1:
        return 1
    if z2 < z1:
        return -1
    return 0


@njit(cache=True, nogil=True)
def _insertion_sort(items, keys, low, high, jan2015):  # pragma: no cover - numba
    for i in range(low, high):
        j = i
        while j > low and _compare(keys[j - 1], keys[j], jan2015) > 0:
            items[j], items[j - 1] = items[j - 1], items[j]
            keys[j], keys[j - 1] = keys[j - 1], keys[j]
            j -= 1


@njit(cache=True, nogil=True)
def _merge(src_items, src_keys, items, keys, low, mid, high, jan2015):  # pragma: no cover - numba
    if _compare(src_keys[mid - 1], src_keys[mid], jan2015) <= 0:
        for i in range(low, high):  # halves already in order: plain copy
            items[i] = src_items[i]
            keys[i] = src_keys[i]
        return
    p = low
    q = mid
    for i in range(low, high):
        if q >= high or (p < mid and _compare(src_keys[p], src_keys[q], jan2015) <= 0):
            items[i] = src_items[p]
            keys[i] = src_keys[p]
            p += 1
        else:
            items[i] = src_items[q]
            keys[i] = src_keys[q]
            q += 1


@njit(cache=True, nogil=True)
def _java6_merge_sort(items, keys, jan2015):  # pragma: no cover - numba
    """Java 6 ``Collections.sort``/``Arrays.sort(Object[], Comparator)``, in place.

    Sorts ``items`` (and their float32 ``keys`` alongside) with
    :func:`_compare`. Top-down merge sort that alternates between the arrays
    and a copy: each call ``sort(src, dest, low, high)`` sorts its halves from
    dest into src and merges them back into dest; ranges below 7 elements are
    insertion sorted; the merge is skipped when the halves are already in
    order; ties take the left element. Written with an explicit stack (numba
    cannot cache recursive functions); depth d works on ``items`` when even.
    """
    aux_items = items.copy()
    aux_keys = keys.copy()
    n = items.size
    depth_max = 2
    while (1 << depth_max) < n + 1:
        depth_max += 1
    lows = np.empty(2 * depth_max + 4, np.int64)
    highs = np.empty_like(lows)
    depths = np.empty_like(lows)
    states = np.zeros_like(lows)
    lows[0], highs[0], depths[0], states[0] = 0, n, 0, 0
    top = 1
    while top > 0:
        low, high, d = lows[top - 1], highs[top - 1], depths[top - 1]
        even = d % 2 == 0
        if high - low < 7:
            if even:
                _insertion_sort(items, keys, low, high, jan2015)
            else:
                _insertion_sort(aux_items, aux_keys, low, high, jan2015)
            top -= 1
        elif states[top - 1] == 0:
            states[top - 1] = 1
            mid = (low + high) >> 1
            for lo, hi in ((mid, high), (low, mid)):
                lows[top], highs[top], depths[top], states[top] = lo, hi, d + 1, 0
                top += 1
        else:
            mid = (low + high) >> 1
            if even:
                _merge(aux_items, aux_keys, items, keys, low, mid, high, jan2015)
            else:
                _merge(items, keys, aux_items, aux_keys, low, mid, high, jan2015)
            top -= 1


@njit(cache=True, nogil=True)
def _is_simple(labels, p, offsets, table):  # pragma: no cover - numba
    code = 0
    for b in range(8):
        if labels[p + offsets[b]] != 0:
            code |= 1 << b
    return table[code] != 0


@njit(cache=True, nogil=True)
def _warp_descent(labels, target, zval, width, jan2015, table):  # pragma: no cover - numba
    """Warp ``labels`` towards ``target`` in place; return the final mismatches.

    All arrays are flat views of images padded by one membrane pixel;
    ``width`` is the padded row length. Each pass lists the mismatches in
    column-major order, sorts them by zval descending and flips every one
    that is a simple point of the current labels; it stops when a pass flips
    nothing (or nothing is left).
    """
    height = labels.size // width
    offsets = np.empty(8, np.int64)
    k = 0
    for dy in range(-1, 2):
        for dx in range(-1, 2):
            if dy != 0 or dx != 0:
                offsets[k] = dy * width + dx
                k += 1
    mismatches = np.empty(labels.size, np.int64)
    n = 0
    for x in range(1, width - 1):
        for y in range(1, height - 1):
            p = y * width + x
            if labels[p] != target[p]:
                mismatches[n] = p
                n += 1
    while n > 0:
        order = mismatches[:n].copy()
        _java6_merge_sort(order, zval[order], jan2015)
        flipped = 0
        for i in range(n):
            p = order[i]
            if _is_simple(labels, p, offsets, table):
                labels[p] = 1 - labels[p]
                flipped += 1
        if flipped == 0:
            break
        kept = 0
        for i in range(n):
            p = mismatches[i]
            if labels[p] != target[p]:
                mismatches[kept] = p
                kept += 1
        n = kept
    return mismatches[:n].copy()


_STEP_Y = np.array([1, -1, 0, 0], dtype=np.int64)
_STEP_X = np.array([0, 0, 1, -1], dtype=np.int64)


@njit(cache=True, nogil=True)
def _splits_in_window(labels, width, p, y0, y1, x0, x1):  # pragma: no cover - numba
    """Do p's cell 8-neighbours fall into >= 2 components once p becomes membrane?

    Components are 4-connected and confined to rows [y0, y1) and columns
    [x0, x1) of the padded image (the window, clipped to the image: pixels
    outside the image are membrane and connect nothing).
    """
    wh, ww = y1 - y0, x1 - x0
    mark = np.zeros(wh * ww, np.int32)
    stack = np.empty(wh * ww, np.int64)
    py, px = p // width, p % width
    mark[(py - y0) * ww + (px - x0)] = -1  # p is membrane now
    found = 0
    for dy in range(-1, 2):
        for dx in range(-1, 2):
            qy, qx = py + dy, px + dx
            if (dy == 0 and dx == 0) or qy < y0 or qy >= y1 or qx < x0 or qx >= x1:
                continue
            if labels[qy * width + qx] == 0 or mark[(qy - y0) * ww + (qx - x0)] != 0:
                continue
            found += 1
            if found >= 2:
                return True
            mark[(qy - y0) * ww + (qx - x0)] = found
            top = 0
            stack[top] = qy * width + qx
            top += 1
            while top > 0:
                top -= 1
                c = stack[top]
                cy, cx = c // width, c % width
                for k in range(4):
                    ny = cy + _STEP_Y[k]
                    nx = cx + _STEP_X[k]
                    if ny < y0 or ny >= y1 or nx < x0 or nx >= x1:
                        continue
                    m = (ny - y0) * ww + (nx - x0)
                    if mark[m] == 0 and labels[ny * width + nx] != 0:
                        mark[m] = found
                        stack[top] = ny * width + nx
                        top += 1
    return False


@njit(cache=True, nogil=True)
def _classify(labels, components, mismatches, width, radius):  # pragma: no cover - numba
    """Count split and merge pixels among the final mismatches.

    ``labels`` is the warped padded image (flat), ``components`` its
    4-connected cell components (padded, flat, 0 = membrane). U = distinct
    component values over p's in-image 8-neighbours.
    """
    height = labels.size // width
    h, w = height - 2, width - 2
    whole = radius < 1 or radius > w or radius > h
    splits = 0
    merges = 0
    values = np.empty(8, np.int64)
    for p in mismatches:
        py, px = p // width, p % width
        nu = 0
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                qy, qx = py + dy, px + dx
                if (dy == 0 and dx == 0) or qy < 1 or qy > h or qx < 1 or qx > w:
                    continue
                v = components[qy * width + qx]
                seen = False
                for k in range(nu):
                    if values[k] == v:
                        seen = True
                if not seen:
                    values[nu] = v
                    nu += 1
        cell = labels[p] != 0
        if nu >= 3:
            if cell:
                splits += 1
            else:
                merges += 1
        elif nu == 2 and cell:
            if whole:
                y0, y1, x0, x1 = 1, h + 1, 1, w + 1
            else:
                y0, y1 = max(1, py - radius), min(h + 1, py + radius + 1)
                x0, x1 = max(1, px - radius), min(w + 1, px + radius + 1)
            if _splits_in_window(labels, width, p, y0, y1, x0, x1):
                splits += 1
    return splits, merges
