"""Energy and latency per generated token, built bottom-up from SPICE-measured per-operation
energies (the fits bundle) and explicitly stated activity, geometry and timing assumptions.

The model counts, for one head and one token step with a sliding window of W tokens, a head
dimension D and A x A arrays (n_sub = ceil(W / A) sub-tiles: the physical arrays of the ring
buffer holding the window, each converted once per token, as fitted mode simulates it):

=====================================  ===========  ===========================================
component                              count/head   energy per operation
=====================================  ===========  ===========================================
query pulses on the K arrays           D * W cells  read_fixed + read_power * q_mean * T_max
K column integrations                  W            sense_amp energy_per_integration
HardSigmoid charge-to-pulse            W            charge_to_pulse energy_per_conversion
phi pulses on the V arrays             W * D cells  read_fixed + read_power * phi_mean * T_max
V column integrations                  n_sub * D    sense_amp energy_per_integration
signed conversion and count            n_sub * D    signed_converter energy_per_conversion
write the new token's K and V          2 * D cells  write energy_per_write
digital control and routing            1            a parameter (paper: 4 nJ per head)
=====================================  ===========  ===========================================

Latency follows one token step's critical path: the write of the new K/V (the sense-amp
resets run beside it), the query pulses (T_max), the K integrators' settling, the HardSigmoid
conversion whose phi pulse is at once the V-array read, the V integrators' settling, the
signed conversion, and a digital tail. Heads run in parallel on their own arrays; sub-tiles
run in parallel unless ``subtile_parallel`` limits them, in which case the array phases repeat.

Where each per-operation quantity comes from is gcsim.energy.sources; the published figures
compared against are gcsim.energy.reference.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import pandas as pd

from gcsim.core.errors import GcsimError
from gcsim.energy.formatting import format_si
from gcsim.energy.reference import (GPU_REFERENCES, PAPER_ENERGY_PER_HEAD_J, PAPER_HEADS,
                                    PAPER_LATENCY_S)
from gcsim.hw.constants import PAPER


class EnergyError(GcsimError):
    """Bad configuration or inputs for the energy model."""


# ---------------------------------------------------------------------------------------------
# Per-operation quantities: what the model counts, and (sources.resolve) their values.

@dataclass(frozen=True)
class Operation:
    key: str                 # name for overrides (--op KEY=VALUE)
    unit: str
    description: str
    kind: str | None = None  # fit kind that carries it
    parameter: str | None = None
    fallback: float | None = None   # used (and flagged) when neither override, fit nor sweep
    fallback_note: str = ""
    derived: bool = False    # computed from the fit's `parameter` (sources._derived), not read


OPERATIONS: dict[str, Operation] = {op.key: op for op in (
    Operation("read_fixed", "J", "read pulse edges, one cell (word-line drive included)",
              "charge_per_pulse", "energy_per_read_fixed", 0.0, "assumed 0"),
    Operation("read_power", "W", "read energy per second of pulse width, one cell",
              "charge_per_pulse", "energy_per_read_power", 0.0, "assumed 0"),
    Operation("integration", "J", "one column integration at zero charge (sense amp, both "
              "resets)", "sense_amp", "energy_per_integration", 0.0, "assumed 0"),
    Operation("integration_sunk", "J/C", "integration energy per coulomb the column sinks "
              "(the OTA sources it from VDD)", "sense_amp", "energy_per_sunk_charge", 0.0,
              "assumed 0"),
    Operation("integration_sourced", "J/C", "integration energy per coulomb the column "
              "sources", "sense_amp", "energy_per_sourced_charge", 0.0, "assumed 0"),
    Operation("integration_window", "s", "time the integration energy covers",
              "sense_amp", "energy_window", 0.0, "assumed 0"),
    Operation("integration_idle", "W", "sense amp's supply power at rest",
              "sense_amp", "idle_power", 0.0, "assumed 0"),
    Operation("c2p_conversion", "J", "one HardSigmoid charge-to-pulse conversion",
              "charge_to_pulse", "energy_per_conversion", 0.0, "assumed 0"),
    Operation("c2p_window", "s", "time the HardSigmoid conversion energy covers",
              "charge_to_pulse", "energy_window", 0.0, "assumed 0"),
    Operation("c2p_idle", "W", "K column's supply power at rest (integrator + converter)",
              "charge_to_pulse", "idle_power", 0.0, "assumed 0"),
    Operation("k_reference", "W", "K array's bias and reference supply power (shared)",
              "charge_to_pulse", "reference_power", 0.0, "assumed 0"),
    Operation("signed_conversion", "J", "one signed conversion and count",
              "signed_converter", "energy_per_conversion", 0.0, "assumed 0"),
    Operation("signed_window", "s", "time the signed conversion energy covers",
              "signed_converter", "energy_window", 0.0, "assumed 0"),
    Operation("signed_idle", "W", "V column's supply power at rest (integrator + converter)",
              "signed_converter", "idle_power", 0.0, "assumed 0"),
    Operation("v_reference", "W", "V array's bias and reference supply power (shared)",
              "signed_converter", "reference_power", 0.0, "assumed 0"),
    Operation("cell_current_mean", "A", "read current of a cell, mean over the DAC's stored "
              "levels", "charge_per_pulse", "current_coefficients", 0.0, "assumed 0",
              derived=True),
    Operation("cell_current_std", "A", "read current of a cell, spread over the DAC's stored "
              "levels", "charge_per_pulse", "current_coefficients", 0.0, "assumed 0",
              derived=True),
    Operation("edge_time", "s", "the read edges' charge as extra pulse width",
              "charge_per_pulse", "edge_time", 0.0, "assumed 0"),
    Operation("token_period", "s", "time from one token to the next: every circuit draws "
              "over it", None, None, PAPER.token_period_s,
              f"assumed the paper's {PAPER.token_period_s * 1e9:g} ns"),
    Operation("write_energy", "J", "one cell write (DAC source and write word line)",
              "write", "energy_per_write", 0.0, "assumed 0"),
    Operation("write_time", "s", "write pulse width (settling through the write device)",
              "write", "write_time", 10e-9,
              "assumed 10 ns, the widest write pulse gain_cell_write.toml sweeps"),
    Operation("t_max", "s", "maximum pulse width T_max (query and phi pulses)",
              "charge_to_pulse", "t_max", PAPER.pulse_max_s,
              f"assumed the paper's {PAPER.pulse_max_s * 1e9:g} ns"),
    Operation("signed_t_max", "s", "signed converter's output window",
              "signed_converter", "t_max", PAPER.pulse_max_s,
              f"assumed the paper's {PAPER.pulse_max_s * 1e9:g} ns"),
    Operation("comparator_delay", "s", "HardSigmoid comparator delay",
              "charge_to_pulse", "comparator_delay", 0.0, "assumed 0"),
    Operation("align_time", "s",
              "lag from the start of a converter's discharge to its output window (netlists' "
              "t_align: comparator delay plus logic)", None, None, 0.7e-9,
              "parameter: the converter testbenches' t_align (0.7 ns)"),
    Operation("settling", "s", "column integrator settling after the pulses end",
              None, None, 1e-9, "parameter: the testbenches' t_hold (1 ns), the wait "
              "between integration and conversion; pass --sweeps to measure it"),
    Operation("reset_time", "s", "sense-amp reset back to mid-rail",
              None, None, 2e-9, "parameter: the sense-amp testbench's t_rst (2 ns); pass "
              "--sweeps to measure it"),
)}


@dataclass(frozen=True)
class Quantity:
    key: str
    value: float
    unit: str
    source: str              # "fit", "sweep", "override", "parameter", "missing"
    detail: str              # where exactly, or what was assumed

    @property
    def simulated(self) -> bool:
        return self.source in ("fit", "sweep")


# ---------------------------------------------------------------------------------------------
# Configuration and the model.

@dataclass(frozen=True)
class EnergyConfig:
    window: int = 1024
    heads: int = 12
    dim: int = 64
    array: int = 64
    digital_energy_J: float = 4e-9       # per head per token, the paper's figure
    query_mean: float = 0.5              # mean query pulse width, fraction of T_max
    phi_mean: float = 0.5                # mean phi pulse width, fraction of T_max
    subtile_parallel: int = 0            # sub-tiles converted at once; 0 = all
    digital_latency_s: float = 0.0       # digital tail (sum of sub-tiles), per token
    back_to_back: bool = False           # token period = latency, not the token_period quantity

    def check(self) -> EnergyConfig:
        for name in ("window", "heads", "dim", "array"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise EnergyError(f"--{name}: expected an integer >= 1, got {value!r}")
        if self.dim > self.array:
            raise EnergyError(f"--dim {self.dim} > --array {self.array}: a head's dimension must "
                              "fit the array's rows (split heads are not modelled)")
        for name in ("query_mean", "phi_mean"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise EnergyError(f"--{name.replace('_', '-')}: expected a fraction of T_max in "
                                  f"[0, 1], got {value:g}")
        if self.digital_energy_J < 0 or self.digital_latency_s < 0:
            raise EnergyError("--digital-energy and --digital-latency must be >= 0")
        if self.subtile_parallel < 0:
            raise EnergyError("--subtile-parallel: expected an integer >= 0 (0 = all)")
        return self

    @property
    def subtiles(self) -> int:
        return math.ceil(self.window / self.array)


@dataclass
class Estimate:
    config: EnergyConfig
    quantities: dict[str, Quantity]
    breakdown: pd.DataFrame        # energy per component
    latency: pd.DataFrame          # latency per phase
    assumptions: list[str] = field(default_factory=list)
    token_period_s: float = math.nan   # what every circuit's draw is counted over

    @property
    def energy_per_head_J(self) -> float:
        return float(self.breakdown["per_head_J"].sum())

    @property
    def energy_per_token_J(self) -> float:
        return float(self.breakdown["per_token_J"].sum())

    @property
    def latency_s(self) -> float:
        return float(self.latency.loc[self.latency["on_critical_path"], "total_s"].sum())


def _source_text(*quantities: Quantity) -> str:
    parts = []
    for q in quantities:
        label = {"fit": "simulated", "sweep": "simulated", "override": "override",
                 "parameter": "parameter", "missing": "MISSING"}[q.source]
        parts.append(f"{label}: {q.key} = {format_si(q.value, q.unit)} ({q.detail})")
    return "; ".join(parts)


def _status(*quantities: Quantity) -> str:
    sources = {q.source for q in quantities}
    if "missing" in sources:
        return "MISSING"
    if sources <= {"fit", "sweep"}:
        return "simulated"
    if "fit" in sources or "sweep" in sources:
        return "simulated + parameter"
    return "parameter"


def column_charge(n_cells: int, width_s: float, q: dict[str, Quantity]) -> tuple[float, float]:
    """(mean sunk, mean sourced) charge of a column of `n_cells` read at once for `width_s`
    each: the cells' stored levels independent and equally likely over the DAC's levels, so
    the column charge is near normal (n_cells terms) with the mean and spread of the per-cell
    current times the width (the edges as extra width, edge_time)."""
    width = width_s + q["edge_time"].value
    mean = n_cells * q["cell_current_mean"].value * width
    std = math.sqrt(n_cells) * q["cell_current_std"].value * width
    if std <= 0:
        return max(-mean, 0.0), max(mean, 0.0)
    z = mean / std
    density = math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    below = 0.5 * math.erfc(z / math.sqrt(2))        # P(Q < 0)
    sunk = std * density - mean * below              # E[max(-Q, 0)]
    return sunk, sunk + mean                         # E[max(Q, 0)] = E[max(-Q, 0)] + E[Q]


def rest_energy(token_period_s: float, column_idle_W: float, integrator_idle_W: float,
                integration_window_s: float, conversion_window_s: float) -> float:
    """What a column (integrator + converter) draws outside its two measured energy windows
    in one token period: the whole column at rest for what the windows leave, and the
    converter alone (the column minus the integrator) while the integrator's window runs,
    which the integrator's testbench does not contain."""
    rest = token_period_s - integration_window_s - conversion_window_s
    if rest < 0:
        raise EnergyError(
            f"token period {format_si(token_period_s, 's')} is shorter than a column's "
            f"measured cycle ({format_si(integration_window_s, 's')} integration + "
            f"{format_si(conversion_window_s, 's')} conversion)")
    # The converter-only power is a difference of two measurements of the same OTA; a
    # negative one would be that difference's noise, not a converter that supplies power.
    converter_W = max(column_idle_W - integrator_idle_W, 0.0)
    return column_idle_W * rest + converter_W * integration_window_s


def estimate(quantities: dict[str, Quantity], config: EnergyConfig) -> Estimate:
    """The per-component energy breakdown and the latency of one token step: every circuit's
    draw over the whole token period (its measured energy window plus its rest)."""
    config.check()
    q = quantities
    W, D, H, n_sub = config.window, config.dim, config.heads, config.subtiles
    t_max = q["t_max"].value
    latency = _latency(q, config)
    critical = float(latency.loc[latency["on_critical_path"], "total_s"].sum())
    if config.back_to_back:
        period = Quantity("token_period", critical, "s", "parameter",
                          "back to back: the token period is the latency")
    else:
        period = q["token_period"]
    T = period.value
    read_k = q["read_fixed"].value + q["read_power"].value * config.query_mean * t_max
    read_v = q["read_fixed"].value + q["read_power"].value * config.phi_mean * t_max
    digital = Quantity("digital_energy", config.digital_energy_J, "J", "parameter",
                       "per head per token, not circuit-level (paper: 4 nJ)")
    integration = (q["integration"], q["integration_sunk"], q["integration_sourced"],
                   q["cell_current_mean"], q["cell_current_std"], q["edge_time"], q["t_max"])

    def integrate(n_cells: float, mean_width: float) -> float:
        sunk, sourced = column_charge(n_cells, mean_width * t_max, q)
        return (q["integration"].value + q["integration_sunk"].value * sunk
                + q["integration_sourced"].value * sourced)

    rows_v = W / n_sub     # tokens (V-array rows) a sub-tile's column sums, on average
    rest_k = rest_energy(T, q["c2p_idle"].value, q["integration_idle"].value,
                         q["integration_window"].value, q["c2p_window"].value)
    rest_v = rest_energy(T, q["signed_idle"].value, q["integration_idle"].value,
                         q["integration_window"].value, q["signed_window"].value)
    rest_sources = (q["integration_idle"], q["integration_window"], period)
    rows = [
        ("query pulses on K arrays (cell reads, WL drive)", "QK array + HardSigmoid", D * W,
         read_k, (q["read_fixed"], q["read_power"], q["t_max"]),
         f"{D} x {W} cells, mean pulse {config.query_mean:g} T_max"),
        ("K column integrations (sense amps)", "QK array + HardSigmoid", W,
         integrate(D, config.query_mean), integration,
         f"{W} columns of {D} cells; zero-charge energy + the charge they sink and source"),
        ("HardSigmoid charge-to-pulse", "QK array + HardSigmoid", W,
         q["c2p_conversion"].value, (q["c2p_conversion"],), f"{W} columns"),
        ("K columns at rest (integrator + converter)", "QK array + HardSigmoid", W, rest_k,
         (q["c2p_idle"], q["c2p_window"], *rest_sources),
         f"{W} columns, the token period outside their energy windows"),
        ("K-array references (bias, i_ref)", "QK array + HardSigmoid", n_sub,
         q["k_reference"].value * T, (q["k_reference"], period),
         f"{n_sub} arrays, the whole token period"),
        ("phi pulses on V arrays (cell reads, WL drive)", "phi-V array", W * D, read_v,
         (q["read_fixed"], q["read_power"], q["t_max"]),
         f"{W} x {D} cells, mean pulse {config.phi_mean:g} T_max"),
        ("V column integrations (sense amps)", "phi-V array", n_sub * D,
         integrate(rows_v, config.phi_mean), integration,
         f"{n_sub} sub-tiles x {D} columns of {rows_v:g} cells; zero-charge energy + the "
         "charge they sink and source"),
        ("signed conversion and count", "phi-V array", n_sub * D,
         q["signed_conversion"].value, (q["signed_conversion"],),
         f"{n_sub} sub-tiles x {D} columns"),
        ("V columns at rest (integrator + converter)", "phi-V array", n_sub * D, rest_v,
         (q["signed_idle"], q["signed_window"], *rest_sources),
         f"{n_sub} sub-tiles x {D} columns, the token period outside their energy windows"),
        ("V-array references (bias, i_ref_signed)", "phi-V array", n_sub,
         q["v_reference"].value * T, (q["v_reference"], period),
         f"{n_sub} arrays, the whole token period"),
        ("write new token's K and V", "DACs (K/V writes)", 2 * D, q["write_energy"].value,
         (q["write_energy"],), f"2 x {D} cells"),
        ("digital control and routing", "digital control and routing", 1,
         config.digital_energy_J, (digital,), "per head"),
    ]
    table = pd.DataFrame([{
        "component": name, "paper_part": part, "count_per_head": count,
        "energy_per_op_J": per_op, "per_head_J": count * per_op,
        "per_token_J": count * per_op * H, "status": _status(*sources), "counted": counted,
        "source": _source_text(*sources)} for name, part, count, per_op, sources, counted in rows])
    total = table["per_head_J"].sum()
    table.insert(6, "share_pct", 100 * table["per_head_J"] / total if total > 0 else 0.0)

    rounds = _rounds(config)
    assumptions = _assumptions(quantities, config, rounds, period)
    return Estimate(config, quantities, table, latency, assumptions, token_period_s=T)


def _rounds(config: EnergyConfig) -> int:
    n_sub = config.subtiles
    return (1 if config.subtile_parallel == 0
            else math.ceil(n_sub / min(config.subtile_parallel, n_sub)))


def _latency(q: dict[str, Quantity], config: EnergyConfig) -> pd.DataFrame:
    """The phases of one token step on the critical path."""
    t_max = q["t_max"].value
    rounds = _rounds(config)
    write_phase = max(q["write_time"].value, q["reset_time"].value)
    phases = [
        ("write new K, V (sense-amp resets beside it)", write_phase, 1,
         (q["write_time"], q["reset_time"]), "max(write_time, reset_time)"),
        ("query pulses, K integration", t_max, rounds, (q["t_max"],), "T_max"),
        ("K integrator settling", q["settling"].value, rounds, (q["settling"],), "settling"),
        ("HardSigmoid conversion = phi pulses on V",
         max(q["align_time"].value, q["comparator_delay"].value) + t_max, rounds,
         (q["align_time"], q["comparator_delay"], q["t_max"]),
         "max(align_time, comparator_delay) + T_max"),
        ("V integrator settling", q["settling"].value, rounds, (q["settling"],), "settling"),
        ("signed conversion and count", q["align_time"].value + q["signed_t_max"].value,
         rounds, (q["align_time"], q["signed_t_max"]), "align_time + signed T_max"),
        ("digital sum of sub-tiles", config.digital_latency_s, 1,
         (Quantity("digital_latency", config.digital_latency_s, "s", "parameter",
                   "not circuit-level"),), "parameter"),
    ]
    return pd.DataFrame([{
        "phase": name, "each_s": each, "times": times, "total_s": each * times,
        "on_critical_path": True, "status": _status(*sources), "formula": formula,
        "source": _source_text(*sources)} for name, each, times, sources, formula in phases])


def _assumptions(q: dict[str, Quantity], config: EnergyConfig, rounds: int,
                 period: Quantity) -> list[str]:
    notes = [
        (f"Activity: mean query pulse {config.query_mean:g} T_max, mean phi pulse "
        f"{config.phi_mean:g} T_max (--query-mean, --phi-mean); read energy grows with pulse "
        "width, so these set the two array rows."),
        ("Every cell read is charged its edge energy (read_fixed), including zero-width pulses "
        "(q = 0 or phi = 0): an upper bound for sparse activity."),
        ("Per-cell read and write energies are SPICE energies of one cell with its word-line "
        "drivers (rail-referenced); word-line and bitline wire capacitance across a 64-cell row "
        "or column is not in the netlists."),
        (f"Every circuit is counted over the whole token period "
         f"{format_si(period.value, 's')} ({period.detail}; --token-period): nothing in the "
         "netlists disables the periphery, so between its operations a column rests in reset "
         "and draws its measured idle power (idle_power, the testbenches' operating point), "
         "and the shared references draw theirs all the time. A column's two energy windows "
         "(integration, conversion) and its rest add up to one token period; the integrator's "
         "second reset, inside its window, stands in for as long a part of the rest."),
        ("The converter draws beside the integrator's window (the integrator's testbench "
         "lacks it): the column's idle power minus the integrator's, a balanced comparator's "
         "draw, an upper bound while the integrator moves the output away from mid-rail."),
        ("Integration energy grows with the charge the column sinks (the read PMOSes; the "
         "OTA sources it from VDD) and changes with the charge it sources: the sense-amp fit's "
         "two slopes times the mean sunk and sourced column charge, with every stored level "
         "equally likely and independent and every pulse at the mean width (normal column "
         "charge)."),
        ("The reset/window drivers and the cells' leakage at rest are not in the netlists; "
         "the output counter's energy is not modelled (signed_converter.cir)."),
        f"Heads run in parallel on their own arrays (per token = {config.heads} x per head); "
        + ("all sub-tiles run in parallel." if rounds == 1 else
           f"sub-tiles run {config.subtile_parallel} at a time: the array phases repeat "
           f"{rounds} times."),
        ("Latency critical path: write, then query pulses, settling (the wait before a "
         "conversion starts), HardSigmoid conversion (its phi pulse is the V read), settling, "
         "signed conversion; sense-amp resets run beside the write; t_align covers the "
         "comparator delay unless the fitted delay is longer."),
        (f"Digital control and routing: {format_si(config.digital_energy_J, 'J')} per head "
        "(--digital-energy, the paper's figure by default), digital latency "
        f"{format_si(config.digital_latency_s, 's')} (--digital-latency)."),
    ]
    for quantity in q.values():
        if quantity.source == "missing":
            notes.append(f"MISSING {quantity.key}: {quantity.detail}.")
        elif quantity.source == "parameter":
            notes.append(f"Parameter {quantity.key} = {format_si(quantity.value, quantity.unit)}:"
                         f" {quantity.detail}.")
        elif quantity.source == "sweep":
            notes.append(f"From a sweep table, {quantity.key} = "
                         f"{format_si(quantity.value, quantity.unit)}: {quantity.detail}.")
        elif quantity.source == "override":
            notes.append(f"Override {quantity.key} = {format_si(quantity.value, quantity.unit)}.")
    return notes


# ---------------------------------------------------------------------------------------------
# Comparisons.

def paper_comparison(result: Estimate) -> pd.DataFrame:
    """gcsim's energy per head grouped as the paper's table, with ratios and the reason when
    the ratio is far from 1."""
    grouped = result.breakdown.groupby("paper_part", sort=False)["per_head_J"].sum()
    rows = []
    for part, paper in PAPER_ENERGY_PER_HEAD_J.items():
        ours = float(grouped.get(part, 0.0))
        rows.append({"part": part, "gcsim_per_head_J": ours, "paper_per_head_J": paper,
                     "ratio_gcsim_to_paper": ours / paper, "why": _why(result, part, ours, paper)})
    total_paper = sum(PAPER_ENERGY_PER_HEAD_J.values())
    rows.append({"part": "total", "gcsim_per_head_J": result.energy_per_head_J,
                 "paper_per_head_J": total_paper,
                 "ratio_gcsim_to_paper": result.energy_per_head_J / total_paper, "why": ""})
    rows.append({"part": "latency per token [s]", "gcsim_per_head_J": result.latency_s,
                 "paper_per_head_J": PAPER_LATENCY_S,
                 "ratio_gcsim_to_paper": result.latency_s / PAPER_LATENCY_S, "why": ""})
    return pd.DataFrame(rows)


def _why(result: Estimate, part: str, ours: float, paper: float) -> str:
    if part == "digital control and routing":
        return "a parameter, not simulated"
    if paper > 0 and 0.5 <= ours / paper <= 2:
        return "within 2x"
    rows = result.breakdown[result.breakdown["paper_part"] == part]
    if rows.empty or ours <= 0:
        return "nothing counted (missing energy)"
    top = rows.sort_values("per_head_J", ascending=False).iloc[0]
    direction = "above" if ours > paper else "below"
    reason = (f"{ours / paper:.2g}x {direction} the paper; largest: {top['component']} "
              f"{format_si(top['energy_per_op_J'], 'J')} x {int(top['count_per_head'])} = "
              f"{format_si(top['per_head_J'], 'J')}")
    if part == "DACs (K/V writes)" and ours < paper:
        reason += ("; the SPICE write is one cell's charge from an ideal DAC source: the DAC's "
                   "own static power and the write bitline's wire are not simulated")
    elif "cell reads" not in str(top["component"]) and ours > paper:
        periphery = rows[~rows["component"].str.contains("cell reads")]["per_head_J"].sum()
        reason += (f"; the column periphery is {100 * periphery / ours:.0f} % of it: gcsim's "
                   "integrator (two-stage OTA on 8 pF) and converters draw bias current through "
                   f"the whole {format_si(result.token_period_s, 's')} token period (nothing "
                   "disables them), where the paper's budget leaves "
                   f"{format_si(paper / max(int(top['count_per_head']), 1), 'J')} per column "
                   "for everything")
    return reason


def gpu_comparison(result: Estimate, references: dict[str, tuple[float, float]] | None = None
                   ) -> pd.DataFrame:
    """Speed-up and energy ratio of gcsim's per-token figures (all heads) against GPU figures
    per token (as given, for the paper's 12 heads and window 1024)."""
    references = GPU_REFERENCES if references is None else references
    rows = []
    for name, (latency, energy) in references.items():
        rows.append({"gpu": name, "gpu_latency_s": latency, "gpu_energy_J": energy,
                     "gcsim_latency_s": result.latency_s,
                     "gcsim_energy_J": result.energy_per_token_J,
                     "speedup": latency / result.latency_s if result.latency_s > 0 else math.inf,
                     "energy_ratio": (energy / result.energy_per_token_J
                                      if result.energy_per_token_J > 0 else math.inf),
                     "paper_speedup": latency / PAPER_LATENCY_S,
                     "paper_energy_ratio": energy / (PAPER_HEADS *
                                                     sum(PAPER_ENERGY_PER_HEAD_J.values()))})
    return pd.DataFrame(rows)


def sweep(quantities: dict[str, Quantity], config: EnergyConfig, name: str, values
          ) -> pd.DataFrame:
    """Energy and latency against one configuration field (window, heads, dim, array, ...)."""
    fields = {f for f in asdict(config)}
    if name not in fields:
        raise EnergyError(f"--sweep {name}: unknown (choose {', '.join(sorted(fields))})")
    rows = []
    for value in values:
        result = estimate(quantities, replace(config, **{name: value}))
        row = {name: value, "energy_per_head_J": result.energy_per_head_J,
               "energy_per_token_J": result.energy_per_token_J, "latency_s": result.latency_s}
        for part, energy in result.breakdown.groupby("paper_part", sort=False)["per_head_J"]:
            row[f"{part} [J/head]"] = float(energy.sum())
        rows.append(row)
    return pd.DataFrame(rows)
