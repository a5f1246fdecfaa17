"""The simulator's bookkeeping of the causal sliding window and of the sub-tiles (arrays of
`array_size` keys) a query reads: masks, diagonal bands, sub-tile slots and their digital sum."""

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


def subtile_span(query_positions: np.ndarray, window: int,
                 array_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query: the first sub-tile its window reaches, and how many sub-tiles it reads."""
    t = np.asarray(query_positions)
    first = np.maximum(0, t - window + 1) // array_size
    count = t // array_size - first + 1
    return first, count


def n_subtile_slots(n_tokens: int, window: int, array_size: int) -> int:
    """The most sub-tiles any of `n_tokens` queries reads."""
    _, count = subtile_span(np.arange(n_tokens), window, array_size)
    return int(count.max())


def subtile_slots(subtile_outputs: np.ndarray, query_start: int, key_start: int, window: int,
                  array_size: int, n_slots: int) -> np.ndarray:
    """A block's per-sub-tile outputs (n_subtiles, n_queries, D), sub-tile 0 starting at key
    `key_start`, rearranged per query into `n_slots` slots from the first sub-tile its window
    reaches: (n_queries, n_slots, D), zero in the slots past the sub-tiles it reads."""
    n_q = subtile_outputs.shape[1]
    first, count = subtile_span(np.arange(query_start, query_start + n_q), window, array_size)
    slot = np.arange(n_slots)[None, :]
    index = np.minimum(first[:, None] - key_start // array_size + slot,
                       subtile_outputs.shape[0] - 1)
    gathered = subtile_outputs.transpose(1, 0, 2)[np.arange(n_q)[:, None], index]
    gathered *= (slot < count[:, None])[..., None]
    return gathered


def subtile_sum(subtile_outputs: np.ndarray, axis: int = 0) -> np.ndarray:
    """The digital sum of the per-sub-tile counter outputs."""
    return np.sum(subtile_outputs, axis=axis)
