"""Click commands: `gcsim simulate attention` and `gcsim bench simulate`."""

from __future__ import annotations

from dataclasses import replace

import json
import math
from pathlib import Path

import click
import numpy as np

from gcsim.core.atomic import check_targets, replacing_all
from gcsim.core.errors import GcsimError
from gcsim.core.files import MAX_ARRAY_BYTES, check_regular
from gcsim.cli.common import OneLineErrors, one_line
from gcsim.simulate.attention import (
    MODES,
    SimulationConfig,
    as_4d,
    check_shapes,
    compare_outputs,
    simulate_attention,
)
from gcsim.simulate.memory import (
    MAX_ARRAY,
    MAX_BATCH,
    MAX_DIM,
    MAX_HEADS,
    MAX_TOKENS,
    MAX_WINDOW,
    check_memory,
    estimate_peak_bytes,
)
from gcsim.bench.simulate import check_bench_memory, format_bench, random_inputs, run_bench
from gcsim.hw import PAPER, PAPER_OPERATING_POINT, FitsBundleError, at_operating_point, model_for_mode


def _load_npy(path: str, name: str) -> np.ndarray:
    try:
        check_regular(path, f"{name} file", MAX_ARRAY_BYTES)
        array = np.load(path, allow_pickle=False)
    except GcsimError as exc:
        raise ValueError(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {name} from {path}: {exc}") from None
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{path} holds several arrays; give {name} as a single-array .npy")
    as_4d(array, name)
    return array


def _positive(name: str, value, allow_zero: bool = False):
    if value is None:
        return
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def _summary_line(name: str, metrics: dict) -> str:
    return (
        f"  vs {name:<7} RMSE {metrics['rmse']:.4g} (after best scale x{metrics['best_scale']:.3g}:"
        f" {metrics['rmse_after_scale']:.4g});"
        f"  cosine per token: mean {metrics['cosine_mean']:.4f},"
        f" median {metrics['cosine_median']:.4f}, min {metrics['cosine_min']:.4f}"
        f" over {metrics['tokens_compared']} tokens"
    )


def _plot(path: str, result, q, k, v, ideal, seed: int, point=PAPER_OPERATING_POINT) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    q4, k4 = as_4d(np.clip(q, 0, 1), "Q"), as_4d(np.clip(k, point.stored_min_V, point.stored_max_V), "K")
    # Sample band entries at random rather than listing all of them: T x W can be 10^8.
    flat = rng.integers(0, result.S.size, size=min(40000, result.S.size))
    b, h, t, w = np.unravel_index(flat, result.S.shape)
    j = t - result.band + 1 + w
    inside = j >= 0
    b, h, t, w, j = b[inside], h[inside], t[inside], w[inside], j[inside]
    ideal_dot = np.einsum("nd,nd->n", q4[b, h, t], k4[b, h, j] - point.mid_rail_V)
    s_units = result.S[b, h, t, w] / result.charge_unit_C

    out = np.asarray(result.output).ravel()
    ref = np.asarray(ideal.output).ravel()
    sel = rng.choice(out.size, size=min(20000, out.size), replace=False)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    axes[0].scatter(ideal_dot, s_units, s=2, alpha=0.4)
    axes[0].set_xlabel(f"ideal dot product q . (k - {point.mid_rail_V:g} V)  [V]")
    axes[0].set_ylabel("S  [µA x T_max]")
    axes[0].set_title(f"{result.mode}: column charge S")
    axes[1].scatter(ref[sel], out[sel], s=2, alpha=0.4)
    axes[1].set_xlabel("ideal softmax attention output  [V]")
    axes[1].set_ylabel(f"{result.mode} output  [counter, -1...1 per sub-tile]")
    axes[1].set_title(f"{result.mode}: output vs ideal")
    fig.suptitle(result.label, fontsize=9)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=120, format="png")
    finally:
        plt.close(fig)


# Both simulation commands refuse a run whose estimated memory exceeds what is available.
yes_option = click.option("--yes", "-y", "confirmed", is_flag=True,
                          help="Run even when the estimated memory is more than the machine "
                               "has available (refused without it).")


@click.group("simulate")
def simulate_group() -> None:
    """Run attention heads through the behavioural gain-cell array models.

    \b
    Example:
      gcsim simulate attention --mode paper --tokens 1024 --heads 2 --window 1024
    """


@simulate_group.command("attention", cls=OneLineErrors)
@click.option("--mode", type=click.Choice(MODES), default="paper", show_default=True,
              help="ideal softmax, linear cells, the published model, or a fits bundle.")
@click.option("--fits", "fits_dir", type=str, default=None,
              help="Fits bundle directory for --mode fitted [default: the repository's fits/builtin/].")
@click.option("--q", "q_path", type=str, default=None, help="Queries .npy, values in [0, 1].")
@click.option("--k", "k_path", type=str, default=None,
              help="Keys .npy, stored volts in the model's DAC range (published: [0, 0.9]; "
                   "fitted: the bundle's design.toml).")
@click.option("--v", "v_path", type=str, default=None,
              help="Values .npy, stored volts in the model's DAC range (as --k).")
@click.option("--tokens", type=click.IntRange(1, MAX_TOKENS), default=None,
              help="Random inputs: tokens [256].")
@click.option("--heads", type=click.IntRange(1, MAX_HEADS), default=None,
              help="Random inputs: heads [1].")
@click.option("--dim", type=click.IntRange(1, MAX_DIM), default=None,
              help="Random inputs: head dimension [64].")
@click.option("--seed", type=int, default=0, show_default=True, help="Random inputs' seed.")
@click.option("--window", type=click.IntRange(1, MAX_WINDOW), default=PAPER.window,
              show_default=True, help="Sliding window W in tokens.")
@click.option("--array", "array_size", type=click.IntRange(1, MAX_ARRAY),
              default=PAPER.array_size, show_default=True,
              help="Array size: key positions per sub-tile.")
@click.option("--no-quantize", is_flag=True,
              help="Turn off the DAC and output quantisation (inputs are still clipped).")
@click.option("--no-clip", is_flag=True,
              help="Do not clip inputs to the physical ranges; out-of-range values are an error.")
@click.option("--no-decay", is_flag=True, help="Turn off the stored-voltage decay.")
@click.option("--decay-factor", type=float, default=None,
              help="Decay exponent per token of age [mode default; paper 1.6e-4].")
@click.option("--token-period", type=float, default=None,
              help="Token period in seconds; decay factor = period / retention time constant.")
@click.option("--mismatch-seed", type=int, default=None,
              help="Draw the fits bundle's per-cell mismatch once with this seed (fitted mode).")
@click.option("--no-readout-loading", is_flag=True,
              help="Fitted mode: ideal column readouts (ignore the bundle's readout_loading and "
                   "cell_conductance fits; about 3.7x faster).")
@click.option("--no-write-error", is_flag=True,
              help="Fitted mode: write exactly on the DAC levels (ignore where the bundle's "
                   "write fit says writes land).")
@click.option("--temperature", type=float, default=None,
              help="Fitted mode: the decay at this temperature in degC (between the decay "
                   "fit's temperatures) [default: the fit's nominal].")
@click.option("--extrapolate", is_flag=True,
              help="Fitted mode: run the decay beyond the ages it was fitted over (the report "
                   "says so) instead of refusing.")
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64",
              show_default=True, help="Arithmetic precision of the arrays.")
@click.option("--loading-dtype", type=click.Choice(["float32", "float64"]), default="float32",
              show_default=True,
              help="Fitted mode: precision of the readout-loading correction's products (a "
                   "few per cent of S; float32 keeps S within 1e-5 of full scale of float64's "
                   "at half the cost).")
@click.option("--threads", type=click.IntRange(1, 4096), default=None,
              help="Threads the simulator runs heads (or one head's blocks) on [one per core].")
@click.option("--save", "save_path", type=str, default=None,
              help="Write S, phi, output, the inputs q, k, v and more to this .npz (a name "
                   "without a suffix gets .npz).")
@click.option("--plot", "plot_path", type=str, default=None,
              help="Write a PNG of S and the output against the ideal values (a .png name).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@yes_option
def attention_command(mode, fits_dir, q_path, k_path, v_path, tokens, heads, dim, seed, window,
                      array_size, no_quantize, no_clip, no_decay, decay_factor, token_period,
                      mismatch_seed, no_readout_loading, no_write_error, temperature,
                      extrapolate, dtype, loading_dtype, threads, save_path, plot_path,
                      as_json, confirmed):  # fmt: skip
    """Simulate attention on gain-cell arrays and report its accuracy against ideal and linear.

    Inputs are your own Q, K, V .npy files (2-D tokens x dim, 3-D heads x tokens x dim or 4-D
    batch x heads x tokens x dim), or random values over the physical ranges. Charges are in
    coulombs and pulse widths in seconds; S is also reported in the published units, µA x T_max.

    A run whose estimated memory (from the shapes) is more than the machine has available is
    refused before anything is allocated, unless --yes is given. --save and --plot are written
    together once the run has finished, or neither is.

    \b
    Examples:
      gcsim simulate attention --mode paper --tokens 1024 --heads 2 --save run.npz --plot run.png
      gcsim simulate attention --mode linear --q Q.npy --k K.npy --v V.npy --window 256 --json
      gcsim simulate attention --mode fitted --fits fits/builtin --tokens 512 --token-period 0.5e-6
      gcsim simulate attention --mode fitted --fits fits/builtin --temperature 85
    """
    try:
        report = _run_attention(**locals())
    except (ValueError, OSError, GcsimError, FitsBundleError) as exc:
        raise click.ClickException(one_line(exc)) from None
    except MemoryError:
        raise click.ClickException(_OUT_OF_MEMORY) from None
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        for line in report.get("stand_ins", []):
            click.echo(f"note: fits bundle: {line}", err=True)
        for line in report.get("warnings", []):
            click.echo(f"warning: {line}", err=True)
        click.echo(_format_report(report))


_OUT_OF_MEMORY = ("out of memory: the run needed more than the machine could give (its estimate "
                  "was within what was available, or --yes was given); make it smaller: fewer "
                  "--tokens or --heads, a smaller --window or --array, or --dtype float32")


def _run_attention(mode, fits_dir, q_path, k_path, v_path, tokens, heads, dim, seed, window,
                   array_size, no_quantize, no_clip, no_decay, decay_factor, token_period,
                   mismatch_seed, no_readout_loading, no_write_error, temperature,
                   extrapolate, dtype, loading_dtype, threads, save_path, plot_path, as_json,
                   confirmed) -> dict:  # fmt: skip
    # Everything that can be refused is, before anything large is allocated or simulated:
    # the outputs, the options, the inputs' shapes and the memory the run would need.
    targets = _output_targets(save_path, plot_path, mode)
    random_shape = _random_shape(q_path, k_path, v_path, tokens, heads, dim)
    model = _check_options(mode, fits_dir, no_decay, decay_factor, token_period, mismatch_seed)
    fitted_only = {"--no-write-error": no_write_error, "--temperature": temperature is not None,
                   "--extrapolate": extrapolate, "--loading-dtype": loading_dtype != "float32"}
    for option, given in fitted_only.items():
        if given and mode != "fitted":
            raise ValueError(f"{option} needs --mode fitted: it acts on the fits bundle's models")
    config = _simulation_config(window, array_size, no_quantize, no_clip, no_decay, decay_factor,
                                token_period, mismatch_seed, no_readout_loading, dtype,
                                keep_intermediates=bool(save_path or plot_path))
    config = replace(config, write_error=not no_write_error, temperature_C=temperature,
                     extrapolate=extrapolate, loading_dtype=loading_dtype, threads=threads)
    config.validate()
    if random_shape is None:
        q, k, v = (_load_npy(p, n) for p, n in zip((q_path, k_path, v_path), "QKV"))
        check_shapes(q, k, v)
        shape, source = as_4d(q, "Q").shape, "files"
        sizes = f"inputs of shape {tuple(np.shape(q))}"
    else:
        shape, source = (1, *random_shape), f"random (seed {seed})"
        heads, tokens, dim = random_shape
        sizes = f"--tokens {tokens} --heads {heads} --dim {dim}"
    _check_memory(config, shape, mode, model, f"{sizes} with --window {window} and --array "
                                               f"{array_size}", confirmed)
    point = model.operating_point if model is not None else PAPER_OPERATING_POINT
    if random_shape is not None:
        q, k, v = (x[0] for x in random_inputs(1, *random_shape, seed, point))
    result, references = _simulate_with_references(q, k, v, mode, model, config)
    report = _attention_report(result, references, q, source, mode, config)
    report["operating_point"] = {"stored_range_V": [point.stored_min_V, point.stored_max_V],
                                 "mid_rail_V": point.mid_rail_V}
    if model is not None and model.notes.get("stand_ins"):
        report["stand_ins"] = list(model.notes["stand_ins"])
    if result.warnings:
        report["warnings"] = list(result.warnings)
    if temperature is not None:
        report["temperature_C"] = temperature
    if targets:
        save, plot = targets.get("save"), targets.get("plot")
        with replacing_all(*targets.values()) as temporaries:
            written = dict(zip(targets, temporaries))
            if save:
                _save_attention(written["save"], result, references, (q, k, v))
            if plot:
                _plot(written["plot"], result, q, k, v, references["ideal"], seed, point)
        if save:
            report["saved"] = str(save)
        if plot:
            report["plot"] = str(plot)
    return report


def _output_targets(save_path, plot_path, mode) -> dict[str, Path]:
    """--save and --plot as the files that will be written, refused in one line when they
    could not be: a --save name with a suffix other than .npz (one without gets .npz, as
    numpy gives it), a --plot that is not a .png, a target that exists and is not a regular
    file (a FIFO, a device, a symlink, a folder), or both naming one file."""
    targets = {}
    if save_path:
        save = Path(save_path)
        if save.suffix == "":
            save = save.with_name(save.name + ".npz")
        elif save.suffix.lower() != ".npz":
            raise ValueError(f"--save {save_path}: expected a .npz file name (the arrays are "
                             "saved as a NumPy .npz archive)")
        targets["save"] = save
    if plot_path:
        if mode == "ideal":
            raise ValueError("--plot compares a hardware mode with ideal; use another --mode")
        if Path(plot_path).suffix.lower() != ".png":
            raise ValueError(f"--plot {plot_path}: expected a .png file name (the plot is a PNG)")
        targets["plot"] = Path(plot_path)
    for name, path in targets.items():
        check_targets([path], f"--{name}")
    check_targets(targets.values(), "--save/--plot")
    return targets


def _random_shape(q_path, k_path, v_path, tokens, heads, dim) -> tuple[int, int, int] | None:
    """(heads, tokens, dim) of random inputs, or None when Q, K and V come from files."""
    files = [q_path, k_path, v_path]
    if any(files):
        if not all(files):
            raise ValueError("give all three of --q, --k and --v, or none")
        if any(x is not None for x in (tokens, heads, dim)):
            raise ValueError("--tokens/--heads/--dim make random inputs; not with --q/--k/--v")
        return None
    tokens = 256 if tokens is None else tokens
    heads = 1 if heads is None else heads
    dim = 64 if dim is None else dim
    for name, value in (("--tokens", tokens), ("--heads", heads), ("--dim", dim)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    return heads, tokens, dim


def _check_memory(config: SimulationConfig, shape, mode: str, model, what: str,
                  confirmed: bool) -> None:
    """Refuse a run whose estimated peak memory (the mode's run and its references) is more
    than the machine has available, unless --yes."""
    powers = 4
    if model is not None:
        powers = len(model.cell.power_coefficients_A(model.read_on_V))
    references = tuple(name for name in ("ideal", "linear") if name != mode)
    needed = estimate_peak_bytes(config, shape, powers=powers, references=references,
                                 mode=mode)
    check_memory(needed, what, confirmed)


def _check_options(mode, fits_dir, no_decay, decay_factor, token_period, mismatch_seed):
    """Refuses option combinations that contradict each other or the mode; loads a hardware
    mode's model once here, so that a missing bundle fails before any simulation, and returns
    it (None for ideal)."""
    if no_decay and (decay_factor is not None or token_period is not None):
        raise ValueError("--no-decay cannot be combined with --decay-factor or --token-period")
    if decay_factor is not None and token_period is not None:
        raise ValueError("give either --decay-factor or --token-period, not both")
    _positive("--decay-factor", decay_factor, allow_zero=True)
    _positive("--token-period", token_period)
    if mode == "fitted":
        model = model_for_mode("fitted", fits_dir)  # fail fast on a missing bundle
        if mismatch_seed is not None and model.mismatch is None:
            raise ValueError(f"the fits bundle {fits_dir} has no mismatch distributions")
        return model
    if fits_dir is not None:
        raise ValueError(f"--fits is only used with --mode fitted, not {mode}")
    if mismatch_seed is not None:
        raise ValueError("--mismatch-seed needs --mode fitted: mismatch comes from the fits bundle")
    return None if mode == "ideal" else model_for_mode(mode)


def _simulation_config(window, array_size, no_quantize, no_clip, no_decay, decay_factor,
                       token_period, mismatch_seed, no_readout_loading, dtype,
                       keep_intermediates: bool) -> SimulationConfig:
    """The command's options as the simulator's configuration."""
    return SimulationConfig(
        window=window,
        array_size=array_size,
        quantize_inputs=not no_quantize,
        quantize_output=not no_quantize,
        clip_inputs=not no_clip,
        decay=not no_decay,
        decay_factor=decay_factor,
        token_period_s=token_period,
        mismatch_seed=mismatch_seed,
        readout_loading=not no_readout_loading,
        keep_intermediates=keep_intermediates,
        dtype=dtype,
    )


def _simulate_with_references(q, k, v, mode, model, config: SimulationConfig):
    """The mode's result, and the ideal and linear modes' (other than itself) on the same
    inputs and options, without intermediates, to compare it with. The references work at
    the mode's operating point (DAC range and mid-rail; the published one for ideal)."""
    result = simulate_attention(q, k, v, mode, model=model, config=config)
    # The references have no temperature: theirs is the published decay's.
    reference_config = SimulationConfig(**{**config.__dict__, "keep_intermediates": False,
                                           "temperature_C": None})
    references = {}
    for name in ("ideal", "linear"):
        if name != mode:
            reference = model
            if name == "linear" and model is not None:
                reference = at_operating_point(model_for_mode("linear"), model.operating_point)
            references[name] = simulate_attention(q, k, v, name, model=reference,
                                                  config=reference_config)
    return result, references


def _attention_report(result, references: dict, q, source: str, mode: str,
                      config: SimulationConfig) -> dict:
    """The run's settings, output range, S range (hardware modes) and accuracy against each
    reference: the JSON report, and `_format_report`'s input."""
    B, H, T, D = as_4d(np.asarray(q), "Q").shape
    report = {
        "mode": result.mode,
        "label": result.label,
        "inputs": source,
        "shape": {"batch": B, "heads": H, "tokens": T, "dim": D},
        "window": result.window,
        "array_size": result.array_size,
        "decay_factor": result.decay_factor,
        "quantized": config.quantize_inputs and mode != "ideal",  # ideal never sees DAC levels
        "clipped": config.clip_inputs,
        "dtype": config.dtype,
        "mismatch_seed": config.mismatch_seed,
        "output_range": [float(np.min(result.output)), float(np.max(result.output))],
        "accuracy": {n: compare_outputs(result.output, r.output) for n, r in references.items()},
    }
    if result.S is not None and mode != "ideal":
        s_units = result.S_in_paper_units()
        report["S_range_uA_Tmax"] = [float(s_units.min()), float(s_units.max())]
    return report


def _save_attention(path: str, result, references: dict, inputs=None) -> None:
    """The output, the references' outputs and the kept intermediates, with what indexes
    them, and the inputs as given (q, k, v: before their DACs), as one .npz."""
    arrays = {
        **({name: np.asarray(x) for name, x in zip("qkv", inputs)} if inputs else {}),
        "output": result.output,
        **{f"{n}_output": r.output for n, r in references.items()},
        "S": result.S,
        "phi": result.phi,
        # Band column w of token t holds key first_key[t] + w (negative: before the start).
        "first_key": np.arange(result.n_tokens) - result.band + 1,
        "window": np.array(result.window),
        "array_size": np.array(result.array_size),
        "decay_factor": np.array(result.decay_factor),
    }
    if result.subtile_outputs is not None:
        arrays["subtile_outputs"] = result.subtile_outputs
        arrays["subtile_indices"] = result.subtile_indices()
        arrays["subtile_arrays"] = result.array_indices()
    with open(path, "wb") as stream:   # a stream: np.savez appends no suffix to it
        np.savez(stream, **arrays)


def _format_report(report: dict) -> str:
    shape = report["shape"]
    lines = [
        f"{report['label']}",
        "  inputs {inputs}: B={batch} H={heads} T={tokens} D={dim}".format(
            inputs=report["inputs"], **shape
        ),
        f"  window {report['window']}, array {report['array_size']}, decay factor "
        f"{report['decay_factor']:.3g}/token, quantised {report['quantized']}, {report['dtype']}",
    ]
    if "S_range_uA_Tmax" in report:
        lo, hi = report["S_range_uA_Tmax"]
        lines.append(f"  S range {lo:.1f} ... {hi:.1f} µA x T_max")
    lo, hi = report["output_range"]
    lines.append(f"  output range {lo:.3f} ... {hi:.3f}")
    for name, metrics in report["accuracy"].items():
        lines.append(_summary_line(name, metrics))
    for key in ("saved", "plot"):
        if key in report:
            lines.append(f"  wrote {report[key]}")
    return "\n".join(lines)


@click.command("simulate", cls=OneLineErrors)
@click.option("--batch", type=click.IntRange(1, MAX_BATCH), default=1, show_default=True,
              help="Sequences per batch.")
@click.option("--heads", type=click.IntRange(1, MAX_HEADS), default=12, show_default=True,
              help="Attention heads.")
@click.option("--tokens", type=click.IntRange(1, MAX_TOKENS), default=1024, show_default=True,
              help="Tokens per sequence.")
@click.option("--dim", type=click.IntRange(1, MAX_DIM), default=64, show_default=True,
              help="Head dimension.")
@click.option("--window", type=click.IntRange(1, MAX_WINDOW), default=1024, show_default=True,
              help="Sliding window W in tokens.")
@click.option("--repeats", type=click.IntRange(1, 1000), default=5, show_default=True,
              help="Times each entry runs; the best is reported (shared machines are noisy).")
@click.option("--fits", "fits_dir", type=str, default=None,
              help="Fits bundle for the fitted entry [fits/; paper coefficients if it has none].")
@click.option("--threads", type=click.IntRange(1, 4096), default=None,
              help="Threads for every entry alike [one per core]. --threads 1 also reports "
                   "CPU-time ratios, which a busy machine disturbs least.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@yes_option
def bench_simulate(batch, heads, tokens, dim, window, repeats, fits_dir, threads, as_json,
                   confirmed):
    """Time the paper and fitted modes against the float32 matmul floor and NumPy softmax.

    The floor is one float32 product per polynomial power for each of the two dot products, at
    full size; softmax is dense float32 NumPy attention. All are measured in the same run.
    Both hold a (tokens x tokens) matrix per head: a run whose estimated memory is more than
    the machine has available is refused unless --yes is given.

    \b
    Examples:
      gcsim bench simulate --repeats 3
      gcsim bench simulate --threads 1 --json
    """
    try:
        check_bench_memory(batch, heads, tokens, dim, window, confirmed)
        result = run_bench(batch, heads, tokens, dim, window, repeats, fits_dir=fits_dir,
                           threads=threads)
    except (ValueError, OSError, GcsimError, FitsBundleError) as exc:
        raise click.ClickException(one_line(exc)) from None
    except MemoryError:
        raise click.ClickException("out of memory: the benchmark needed more than the machine "
                                   "could give; make it smaller: fewer --tokens, --heads or "
                                   "--batch") from None
    click.echo(json.dumps(result, indent=2) if as_json else format_bench(result))
