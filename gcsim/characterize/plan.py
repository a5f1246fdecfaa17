"""Plans a sweep: the models of each corner, the grid of points (with Monte Carlo mismatch),
and how the points are grouped into ngspice runs (Units).

Batching: a dc spec whose swept parameters drive sources runs as one nested ``.dc`` per
combination of its other axes; every other point set runs as many independent testbench
instances in one netlist (``.op`` or ``.tran``).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from gcsim.core.errors import ParameterError, SpecError
from gcsim.core.values import MAX_NAME, shown
from gcsim.spice import process as processes
from gcsim.spice.template import Template, parse_vector
from gcsim.characterize.spec import Spec


@dataclass
class Unit:
    """One planned ngspice run over some points of the grid."""

    points: list[int]               # indexes into the sweep's grid
    dc_grid: bool                   # nested .dc (else: one instance per point)
    seed: int | None = None         # ngspice's seed (Monte Carlo with the library's mismatch)
    # > 0: Monte Carlo samples as testbench instances under one shared nested .dc, each
    # instance this many consecutive points (one sample's whole sweep).
    instance_points: int = 0
    netlist: str = ""
    vectors: list[str] = field(default_factory=list)
    key: str = ""


# ------------------------------------------------------------------------- models and checks
def model_sets(spec: Spec, selector: str | None) -> list[processes.ModelSet]:
    """The models of each corner: ``selector`` (from the command line: relative to the current
    folder), else the spec's own, one set per listed corner."""
    base = spec.base or (spec.path.parent if spec.path else None)
    if selector:
        chosen, base = selector, None
    else:
        chosen = spec.models
    if spec.corners and ":" not in chosen:
        return [processes.resolve(processes.with_corner(chosen, corner), base)
                for corner in spec.corners]
    return [processes.resolve(chosen, base)]


def check_extras(spec: Spec, template: Template,
                 models_by_corner: list[processes.ModelSet]) -> None:
    """Temperatures and Monte Carlo need parameters in the template and data in the models."""
    name = spec.name
    if spec.temperatures and "temp_c" not in template.defaults:
        raise SpecError(f"{name}: temperatures: {template.path.name} declares no "
                        "temp_c parameter (use .param temp_c=27 and .options temp={temp_c})")
    mc = spec.montecarlo
    if not mc:
        return
    for device in mc.devices:
        for key in ("dvth", "w", "l"):
            param = getattr(device, key)
            if param not in template.defaults:
                raise SpecError(f"{name}: montecarlo.devices.{device.name}.{key}: "
                                f"{template.path.name} declares no parameter "
                                f"{param!r}")
        if device.dvth in template.global_params:
            raise SpecError(f"{name}: montecarlo.devices.{device.name}.dvth: {device.dvth} "
                            "is used at the top level; it must reach the device instance")
    for models in models_by_corner:
        if models.mismatch == "pdk":
            continue
        if models.mismatch == "none":
            raise SpecError(f"{name}: montecarlo: models {models.name} have no mismatch "
                            "data (give the roles a_vt_mV_um, or the library "
                            "mismatch_sections, in its role mapping)")
        if not mc.devices:
            raise SpecError(f"{name}: montecarlo.devices: required with models "
                            f"{models.name} (Pelgrom mismatch goes through the template's "
                            "dvth parameters)")
        for device in mc.devices:
            if device.role not in models.roles:
                raise SpecError(f"{name}: montecarlo.devices.{device.name}.role: models "
                                f"{models.name} map no role {device.role!r}")
            if not models.roles[device.role].a_vt_mV_um:
                raise SpecError(f"{name}: montecarlo.devices.{device.name}: role "
                                f"{device.role} of models {models.name} has no Pelgrom "
                                "coefficient (a_vt_mV_um in its role mapping)")


def check_dc_sources(spec: Spec, template: Template) -> None:
    """Every dc_source is a voltage source of the template that takes its axis's value."""
    for axis in spec.axes:
        if not axis.dc_source:
            continue
        line = template.element_line(axis.dc_source)
        if line is None or not line.lower().startswith("v"):
            raise SpecError(f"{spec.name}: dc_source {axis.dc_source!r} is not a "
                            f"voltage source of {template.path.name}")
        if "{" + axis.param + "}" not in line.lower().replace(" ", ""):
            raise SpecError(f"{spec.name}: dc_source {axis.dc_source} does not take "
                            f"its value from {{{axis.param}}}")


# A measure vector is at most this long: v( or i(, a name through one subcircuit level, ).
MAX_VECTOR = 2 * MAX_NAME
# ngspice's names of the ground node: it is 0 V and keeps no vector.
GROUND = {"0", "gnd"}


def check_vectors(spec: Spec, template: Template) -> None:
    """Every measure vector names a node (v) or a branch-current element (i) of the
    testbench, so a typo is refused before any run instead of failing every point. Checked
    against the flat testbench (the names a spec uses); a name inside a subcircuit instance
    (x1.node) is accepted when the instance exists. A name not found is still accepted when
    some element line could not be read (its nodes are unknown)."""
    for index, measure in enumerate(spec.measures):
        problem = _vector_problem(measure.vector, template)
        if problem:
            raise SpecError(f"{spec.name}: measure[{index}].vector: {problem}")


def _vector_problem(expression: str, template: Template) -> str | None:
    """Why ``expression`` cannot be read from ``template``'s runs, or None."""
    if len(expression) > MAX_VECTOR:
        return f"{shown(expression)} is longer than {MAX_VECTOR} characters"
    kind, name = parse_vector(expression)
    shown_vector = " ".join(expression.split())
    written = expression.strip()[2:-1].strip().split("#", 1)[0]     # the name, its case kept
    net = template.connectivity
    file = template.path.name
    base = name.split("#", 1)[0]      # v(name#branch) reads a branch by its vector name
    if kind == "v" and base in GROUND:
        return f"{shown_vector} is ground: it is 0 V and ngspice keeps no vector for it"
    if base in (net.nodes if kind == "v" else net.branches) or (
            base != name and (base in net.nodes or base in net.elements)):
        return None
    if "." in base:               # inside a subcircuit instance: x1.node, v.x1.vname
        if any(part in net.instances for part in base.split(".")) or net.unread:
            return None
        instance = written.split(".", 1)[0]
        return (f"{shown_vector}: {file} has no subcircuit instance {instance}"
                + _suggest(instance.lower(), net.instances, "instances"))
    if net.unread:                # an element line gcsim could not read may hold it
        return None
    if kind == "v":
        nodes = {k: v for k, v in net.nodes.items() if k not in GROUND}
        return f"{shown_vector}: {file} has no node {written}" + _suggest(base, nodes, "nodes")
    if base in net.elements:
        return (f"{shown_vector}: {net.elements[base]} is not a source whose current "
                "ngspice keeps (i() reads voltage sources, inductors, E, H and B V= sources;"
                " put a 0 V source in series)")
    if base in net.nodes and base not in GROUND:
        return (f"{shown_vector}: {net.nodes[base]} is a node of {file}, not a voltage source"
                f" (its voltage is v({net.nodes[base]}))")
    return (f"{shown_vector}: {file} has no voltage source {written}"
            + _suggest(base, net.branches, "voltage sources"))


def _suggest(name: str, known: dict[str, str], what: str) -> str:
    """' (close: a, b)' from the close names of ``known`` (lower case -> as written), else a
    few of them."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    if close:
        return f" (close: {', '.join(known[c] for c in close)})"
    if not known:
        return f" (it has no {what})"
    names = [known[k] for k in sorted(known)]
    more = f", ... {len(names)} in all" if len(names) > 6 else ""
    return f" ({what}: {', '.join(names[:6])}{more})"


# ------------------------------------------------------------------------- the grid
def base_grid(spec: Spec) -> tuple[list[dict[str, float]], list[dict]]:
    """Template parameters and extra row labels of every point, before mismatch: the spec's
    axes inside its temperatures and Monte Carlo runs (the last axis varies fastest)."""
    temperatures = spec.temperatures or (None,)
    runs = range(spec.montecarlo.runs) if spec.montecarlo else (None,)
    points = spec.grid()
    grid, labels = [], []
    for temperature in temperatures:
        for run in runs:
            for point in points:
                params, label = dict(point), {}
                if temperature is not None:
                    params["temp_c"] = temperature
                    label["temperature_C"] = temperature
                if run is not None:
                    label["mc_run"] = run
                grid.append(params)
                labels.append(label)
    return grid, labels


def apply_pelgrom(mc, models: processes.ModelSet, defaults: dict[str, float],
                  grid: list[dict[str, float]], labels: list[dict], varying: list[str]) -> None:
    """Set dvth of each declared device in ``grid`` (and its label, and add it to
    ``varying``): A_Vt/sqrt(W*L) times a standard-normal draw that is a fixed function of
    (seed, run, device), so one run is one sample of the circuit across all its sweep points.
    ``defaults``: the template's parameters with the fixed ones applied."""
    for device in mc.devices:
        a_vt = models.roles[device.role].a_vt_mV_um
        varying.append(device.dvth)
        draws: dict[int, float] = {}
        for params, label in zip(grid, labels):
            run = label["mc_run"]
            if run not in draws:
                draws[run] = processes.standard_normal(mc.seed, run, device.name)
            w = params.get(device.w, defaults[device.w])
            length = params.get(device.l, defaults[device.l])
            if w <= 0 or length <= 0:
                raise ParameterError(f"montecarlo.devices.{device.name}: W and L must be "
                                     "> 0 for Pelgrom mismatch")
            dvth = draws[run] * processes.pelgrom_sigma_V(a_vt, w, length)
            params[device.dvth] = dvth
            label[f"dvth_{device.name}_V"] = dvth


# ------------------------------------------------------------------------- grouping into runs
def dc_axes(spec: Spec) -> list:
    """The axes a dc spec sweeps through voltage sources."""
    return [a for a in spec.axes if a.dc_source] if spec.analysis == "dc" else []


def plan_units(spec: Spec, template: Template, grid: list[dict[str, float]],
               labels: list[dict], varying: list[str], pdk_mc: bool,
               sample_instances: bool = True) -> list[Unit]:
    """The runs that cover ``grid``, not yet built (no netlist or key).

    Points split into separate runs where they differ in a parameter one run cannot vary: a
    top-level one, or (nested .dc) any that is not a dc axis. ``pdk_mc``: the library draws
    mismatch when it loads, so each Monte Carlo run is its own ngspice run with its seed,
    unless ``sample_instances`` batches samples as instances (``gcsim bench sweep
    --montecarlo`` times both ways)."""
    swept_dc = dc_axes(spec)
    grid_dc = bool(swept_dc) and all(a.linear or len(a.values) == 1 for a in swept_dc)
    split_params = {p for p in varying if p in template.global_params}
    if grid_dc:
        split_params |= set(varying) - {a.param for a in swept_dc}
    # Monte Carlo samples as instances of one netlist (each draws its own mismatch: the
    # library's per device instance, or gcsim's Pelgrom shifts per instance), so a process
    # library loads once per batch of samples instead of once per sample.
    mc_batch = (sample_instances and grid_dc and spec.montecarlo is not None
                and shares_dc_sources(spec, template))
    if mc_batch:
        split_params -= {d.dvth for d in spec.montecarlo.devices}
    groups: dict[tuple, list[int]] = {}
    for index, point in enumerate(grid):
        key = tuple(point[p] for p in sorted(split_params))
        if pdk_mc and not mc_batch:   # the library draws mismatch at load: a seed per run
            key = (labels[index]["mc_run"],) + key
        groups.setdefault(key, []).append(index)
    units = []
    for indexes in groups.values():
        if mc_batch:
            units += _sample_batches(spec, indexes, labels, pdk_mc)
            continue
        seed = processes.run_seed(spec.montecarlo.seed, labels[indexes[0]]["mc_run"]) \
            if pdk_mc else None
        if grid_dc:
            units.append(Unit(indexes, True, seed))
        else:
            # Batch points whose later axes agree (pulse width, say): instances of one
            # transient share its time steps, and every instance's own breakpoints force
            # small steps on all of them, so like timings together keep runs short.
            params = [a.param for a in spec.axes]
            indexes = sorted(indexes, key=lambda i: [grid[i][p] for p in reversed(params)])
            for start in range(0, len(indexes), spec.batch):
                units.append(Unit(indexes[start:start + spec.batch], False, seed))
    return units


def shares_dc_sources(spec: Spec, template: Template) -> bool:
    """Whether the dc axes' sources can be shared by testbench instances: voltage sources of
    the testbench whose own current no measure reads."""
    sources = {a.dc_source.lower() for a in dc_axes(spec)}
    measured = {parse_vector(m.vector)[1].lower() for m in spec.measures
                if parse_vector(m.vector)[0] == "i"}
    return all(s.startswith("v") and template.element_line(s) is not None
               for s in sources) and not sources & measured


def _sample_batches(spec: Spec, indexes: list[int], labels: list[dict],
                    pdk_mc: bool) -> list[Unit]:
    """Runs of whole Monte Carlo samples: each sample's dc points (in grid order, as the
    nested .dc walks them) are one instance, and a run takes as many samples as fit in
    ``spec.batch`` points (at least one). A run's seed is its first sample's."""
    samples: dict[int, list[int]] = {}
    for index in indexes:
        samples.setdefault(labels[index]["mc_run"], []).append(index)
    runs = list(samples.values())
    per_run = max(1, spec.batch // len(runs[0]))
    units = []
    for start in range(0, len(runs), per_run):
        chunk = runs[start:start + per_run]
        seed = (processes.run_seed(spec.montecarlo.seed, labels[chunk[0][0]]["mc_run"])
                if pdk_mc else None)
        units.append(Unit([i for sample in chunk for i in sample], True, seed,
                          instance_points=len(chunk[0])))
    return units


def split(unit: Unit, batch: int) -> list[Unit]:
    """A failed run's points in smaller runs, not yet built: batched samples in halves (a
    single sample as its own nested .dc), a nested .dc as instance batches of ``batch``
    points, an instance run in halves."""
    if unit.instance_points:
        samples = len(unit.points) // unit.instance_points
        if samples == 1:
            return [Unit(list(unit.points), True, unit.seed)]
        cut = (samples // 2) * unit.instance_points
        return [Unit(unit.points[:cut], True, unit.seed, unit.instance_points),
                Unit(unit.points[cut:], True, unit.seed, unit.instance_points)]
    if unit.dc_grid:
        return [Unit(unit.points[s:s + batch], False, unit.seed)
                for s in range(0, len(unit.points), batch)]
    half = len(unit.points) // 2
    return [Unit(unit.points[:half], False, unit.seed),
            Unit(unit.points[half:], False, unit.seed)]
