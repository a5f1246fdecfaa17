"""The simulator's bookkeeping of the causal sliding window and of the sub-tiles (arrays of
`array_size` keys) a query reads: masks, diagonal bands, sub-tile slots, their digital sum, and
the physical arrays of the ring buffer that holds the window (ceil(window / array_size) arrays;
key j lives in array (j // array_size) % that number)."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided


def window_mask(query_positions, key_positions, window: int) -> np.ndarray:
    """Causal sliding-window mask M[t, j] = (t - window < j <= t)."""
    age = np.subtract.outer(np.asarray(query_positions), np.asarray(key_positions))
    return (age >= 0) & (age < window)


class BlockMasks:
    """`window_mask` of a block of queries against its keys, as 0/1 in `dtype`, kept per block
    shape: every full block of a run has the same one."""

    def __init__(self, window: int, dtype):
        self.window = window
        self.dtype = np.dtype(dtype)
        self._cache: dict[tuple[int, int, int], np.ndarray] = {}

    def __call__(self, query_start: int, n_queries: int, key_start: int,
                 n_keys: int) -> np.ndarray:
        key = (query_start - key_start, n_queries, n_keys)
        if key not in self._cache:
            inside = window_mask(key[0] + np.arange(n_queries), np.arange(n_keys), self.window)
            self._cache[key] = inside.astype(self.dtype)
        return self._cache[key]


def band_view(block: np.ndarray, offset: int, width: int) -> np.ndarray:
    """dest[r, w] = block[r, r + offset + w]: a block's diagonal band, zero left of column 0."""
    if offset < 0:
        padded = np.zeros((block.shape[0], block.shape[1] - offset), dtype=block.dtype)
        padded[:, -offset:] = block
        block, offset = padded, 0
    s0, s1 = block.strides
    return as_strided(block[:, offset:], shape=(block.shape[0], width), strides=(s0 + s1, s1))


def ring_arrays(window: int, array_size: int) -> int:
    """Physical arrays in the ring buffer holding a window: ceil(window / array_size)."""
    return -(-window // array_size)


def subtile_span(query_positions: np.ndarray, window: int, array_size: int,
                 n_arrays: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per query: the first sub-tile its window reaches, and how many sub-tiles it reads; on a
    ring of `n_arrays` arrays, how many arrays (its first and last sub-tile may share one)."""
    t = np.asarray(query_positions)
    first = np.maximum(0, t - window + 1) // array_size
    count = t // array_size - first + 1
    if n_arrays is not None:
        count = np.minimum(count, n_arrays)
    return first, count


def n_subtile_slots(n_tokens: int, window: int, array_size: int,
                    n_arrays: int | None = None) -> int:
    """The most sub-tiles (on a ring of `n_arrays`: arrays) any of `n_tokens` queries reads."""
    _, count = subtile_span(np.arange(n_tokens), window, array_size, n_arrays)
    return int(count.max())


def subtiles_read(query_start: int, n_queries: int, key_start: int, n_subtiles: int,
                  window: int, array_size: int) -> np.ndarray:
    """(n_subtiles, n_queries): whether each query of a block reads each of the block's
    sub-tiles (the first starting at key `key_start`, on a sub-tile boundary) at all."""
    first, count = subtile_span(np.arange(query_start, query_start + n_queries), window,
                                array_size)
    first = first - key_start // array_size
    s = np.arange(n_subtiles)[:, None]
    return (s >= first) & (s < first + count)


def fold_ring(per_subtile: np.ndarray, n_arrays: int) -> np.ndarray:
    """Per-sub-tile values (n_subtiles, ...) of a block whose sub-tiles start on one, summed
    per physical array of a ring of `n_arrays`: entry i holds sub-tiles i, i + n_arrays, ...
    (min(n_subtiles, n_arrays), ...). A query's window reaches two of them only when they
    share the array that holds both its oldest and its newest keys."""
    n_sub = per_subtile.shape[0]
    if n_sub <= n_arrays:
        return per_subtile
    folded = per_subtile[:n_arrays].copy()
    for start in range(n_arrays, n_sub, n_arrays):
        lap = per_subtile[start:start + n_arrays]
        folded[:len(lap)] += lap
    return folded


def ring_held_keys(query_positions: np.ndarray, n_arrays: int,
                   array_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query, the keys [lo, hi) the ring's cells hold while it is read: each of its
    n_arrays * array_size rows holds the newest key written to it, which may be older than
    the window (the rows past a window that is not a whole number of arrays). Rows not yet
    written stand in for a full array with the key that will be written there first, as the
    published model's sub-tiles do."""
    rows = n_arrays * array_size
    lo = np.maximum(0, np.asarray(query_positions) - rows + 1)
    return lo, lo + rows


def subtile_slots(subtile_outputs: np.ndarray, query_start: int, key_start: int, window: int,
                  array_size: int, n_slots: int, n_arrays: int | None = None) -> np.ndarray:
    """A block's per-sub-tile outputs (n_subtiles, n_queries, D), sub-tile 0 starting at key
    `key_start`, rearranged per query into `n_slots` slots from the first sub-tile its window
    reaches: (n_queries, n_slots, D), zero in the slots past the sub-tiles it reads. With
    `n_arrays`, the outputs are per physical array (`fold_ring`) and slot s is the array
    holding sub-tile first + s; slot 0 then also holds the newest keys when they share it."""
    n_q = subtile_outputs.shape[1]
    first, count = subtile_span(np.arange(query_start, query_start + n_q), window, array_size,
                                n_arrays)
    slot = np.arange(n_slots)[None, :]
    index = first[:, None] - key_start // array_size + slot
    if n_arrays is not None:
        index %= n_arrays
    index = np.minimum(index, subtile_outputs.shape[0] - 1)
    gathered = subtile_outputs.transpose(1, 0, 2)[np.arange(n_q)[:, None], index]
    gathered *= (slot < count[:, None])[..., None]
    return gathered


def subtile_sum(subtile_outputs: np.ndarray, axis: int = 0) -> np.ndarray:
    """The digital sum of the per-sub-tile counter outputs."""
    return np.sum(subtile_outputs, axis=axis)
