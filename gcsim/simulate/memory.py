"""How much memory a simulation will take, estimated from its shapes before anything is
allocated, and the check that refuses one the machine cannot hold (`--tokens 10000000` would
otherwise allocate tens of GiB and die of MemoryError, or push the machine into swap).

The estimate follows the arrays `gcsim.simulate.attention` allocates: the inputs and their DAC
copies, the output and the kept intermediates (S and phi are tokens x band, the sub-tile outputs
tokens x slots x dim), each head's cell features, the mismatch samples, and the working set of
one block of queries against the keys of the sub-tiles its windows reach (including the masks
kept per block shape). It is meant to be within a factor of two, erring high.
"""

from __future__ import annotations

import os

import numpy as np

from gcsim.core.errors import GcsimError

# Bounds on the simulator's sizes, for the command-line options: past them a run is not a
# question of memory but of a typing error.
MAX_TOKENS = 100_000_000
MAX_WINDOW = 100_000_000
MAX_ARRAY = 65_536
MAX_HEADS = 4_096
MAX_BATCH = 4_096
MAX_DIM = 65_536

GIB = 1024 ** 3


class MemoryLimitError(GcsimError):
    """A simulation's estimated peak memory is more than the machine has available."""


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _mask_cache_elements(n_tokens: int, window: int, n_queries: int, n_keys: int) -> int:
    """Elements of the block masks kept for the run (`windows.BlockMasks`, one per block shape):
    every block that starts inside the first window has its own shape, growing by a block each;
    the steady-state blocks share one or two."""
    early = _ceil_div(min(window, n_tokens), n_queries) + 1      # blocks with distinct shapes
    early = min(early, _ceil_div(n_tokens, n_queries))
    growing = min(early, n_keys // n_queries)                     # i * n_queries < n_keys
    columns = n_queries * growing * (growing + 1) // 2 + (early - growing) * n_keys
    return n_queries * (columns + 2 * n_keys)


def _strong_decay(config, powers: int, span: int) -> bool:
    """Whether the cells' decay may be too strong to factorise over a block's span, so that
    each block builds explicit decay matrices (see GainCellArray._factorisable): with a token
    period the decay factor is not known here, so it may be."""
    if not config.decay:
        return False
    if config.token_period_s is not None:
        return True
    factor = config.decay_factor if config.decay_factor is not None else 1.6e-4
    return factor * powers * span > 20.0


def estimate_peak_bytes(config, shapes, *, powers: int = 6, references: tuple[str, ...] = (),
                        mode: str = "fitted", inputs: bool = True) -> int:
    """Estimated peak bytes of `simulate_attention(q, k, v, mode, config=config)` on inputs of
    `shapes` (batch, heads, tokens, dim), followed by the `references` modes ('ideal',
    'linear') on the same inputs without intermediates, as `gcsim simulate attention` runs
    them. `powers`: terms of the cell polynomial (6 covers the shipped fits; the paper's has
    4). `inputs`: count the caller's float64 Q, K and V too."""
    batch, heads, tokens, dim = (int(x) for x in shapes)
    n = batch * heads * tokens * dim
    inputs_bytes = 3 * n * 8 if inputs else 0

    def run_bytes(run_mode: str, keep: bool) -> tuple[int, int]:
        """(bytes the result holds, bytes the run needs beyond that while it runs)."""
        window = config.window or tokens
        band = min(window, tokens)
        written = 4 * n * 8                      # Q, K, V through their DACs, one temporary
        if run_mode == "ideal":
            block = min(tokens, config.block_queries)
            span = min(window + block - 1, tokens)
            result = n * 8 + (2 * batch * heads * tokens * band * 8 if keep else 0)
            # keys and values less the mid-rail; per block: dots, ages, mask, logits, weights
            working = written + 2 * n * 8 + 7 * block * span * 8
            return result, working
        size = np.dtype(config.dtype).itemsize
        a = config.array_size
        block = min(tokens, max(a, (config.block_queries // a) * a))
        n_tiles = _ceil_div(tokens, a)
        keys = min(_ceil_div(block + window - 1, a) + 1, n_tiles) * a
        n_sub = keys // a
        slots = min(_ceil_div(window, a) + 1, n_tiles)
        loading = config.readout_loading and run_mode == "fitted"
        # the current array, resting and extra, and the current in the correction's precision
        arrays_per_side = 4 if loading else 1
        result = n * 8
        if keep:   # S, phi, S in the published units (the report), the sub-tile outputs
            result += 3 * batch * heads * tokens * band * size
            result += batch * heads * tokens * slots * dim * size + tokens * slots * 8
        # One head's K and V cell features and key matrices, and the float64 temporaries.
        cells = 2 * arrays_per_side * 2 * powers * tokens * dim * size + 2 * tokens * dim * 8
        mismatch = 0
        if config.mismatch_seed is not None and run_mode == "fitted":
            n_arrays = _ceil_div(window, a)
            mismatch = 4 * heads * n_arrays * a * dim * 8 + 4 * tokens * dim * 8
        masks = _mask_cache_elements(tokens, window, block, keys) * size
        matrix = block * keys * size             # one (queries x keys) matrix of a block
        # K side: the scores and the pulses (with loading: the deviation, the conductances,
        # the converted charge); a decay too strong to factorise adds an age and a decay matrix.
        k_side = (7 if loading else 2) * matrix
        if _strong_decay(config, powers, block + window):
            k_side += 3 * block * keys * 8
        # V side: one product of every power at a time (with loading in one precision, the
        # charge's and the deviation's weights in one product), and the per-sub-tile charges.
        stacked = 2 if loading and np.dtype(config.loading_dtype) == np.dtype(config.dtype) else 1
        v_side = stacked * n_sub * block * powers * dim * size
        v_side += (2 * arrays_per_side + 3) * block * n_sub * dim * size
        v_side += 2 * block * slots * dim * size
        # Heads run in parallel threads, each with its own arrays and block temporaries.
        workers = min(batch * heads, getattr(config, "threads", None) or os.cpu_count() or 1)
        working = written + mismatch + masks + workers * (cells + k_side + v_side)
        return result, working

    result, working = run_bytes(mode, config.keep_intermediates)
    peak = result + working
    for name in references:
        held, needed = run_bytes(name, False)
        peak = max(peak, result + held + needed)
    return inputs_bytes + peak


def available_bytes() -> int | None:
    """Memory this machine can give a new process without swapping: MemAvailable from
    /proc/meminfo, else the free physical pages; None when neither can be read."""
    try:
        with open("/proc/meminfo") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def format_bytes(count: float) -> str:
    if count >= GIB:
        return f"{count / GIB:,.1f} GiB"
    return f"{count / 1024 ** 2:,.0f} MiB"


def check_memory(needed: int, what: str, confirmed: bool = False,
                 available: int | None = None) -> None:
    """Raise MemoryLimitError, one line, when `needed` bytes are more than the machine has
    available, unless `confirmed` (--yes). `what` names the run and what sets its size."""
    if confirmed:
        return
    available = available_bytes() if available is None else available
    if available is None or needed <= available:
        return
    raise MemoryLimitError(f"{what} needs about {format_bytes(needed)} of memory (estimated "
                           f"from the shapes), more than the {format_bytes(available)} this "
                           "machine has available; make it smaller, or add --yes to run it "
                           "anyway")
