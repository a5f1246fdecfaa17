"""Builds a planned run: its netlist (the template with the corner's models and the points
as one nested .dc or as testbench instances), the vectors to bring back, and its cache key."""

from __future__ import annotations

from typing import Callable

from gcsim.spice import devices
from gcsim.spice import process as processes
from gcsim.spice.template import Template, save_card, vector_name
from gcsim.characterize.cache import run_key
from gcsim.characterize.extract import extraction_key
from gcsim.characterize.plan import Unit, dc_axes
from gcsim.characterize.spec import Spec


def build(unit: Unit, spec: Spec, template: Template, models: processes.ModelSet,
          model_hashes: dict, fixed: dict[str, float], grid: list[dict[str, float]],
          varying: list[str], ngspice: str) -> Unit:
    """Fill in ``unit``'s netlist, vectors and key (and return it). ``fixed``: the parameters
    no axis sets; ``varying``: those that differ between the grid's points; ``ngspice``: the
    version that will run it, part of the key."""
    if unit.instance_points:
        render, unit.vectors = _sample_instances(unit, spec, template, fixed, grid, varying)
    elif unit.dc_grid:
        render, unit.vectors = _nested_dc(unit, spec, template, fixed, grid, varying)
    else:
        render, unit.vectors = _instances(unit, spec, template, fixed, grid, varying)
    unit.netlist = render(models.lines(unit.seed))
    found = devices.check_sizes(unit.netlist, models)
    if models.prebin_file:
        # Give each role a device copy with only the model bins its sizes use.
        sizes: dict[str, set] = {}
        for device in found:
            sizes.setdefault(device.role, set()).add((device.w_m, device.l_m))
        unit.netlist = render(models.lines(unit.seed, sizes))
    unit.key = run_key(netlist=unit.netlist, vectors=unit.vectors, models=model_hashes,
                       ngspice=ngspice, ngbehavior=models.ngbehavior,
                       extraction=extraction_key(spec))
    return unit


def _run_params(unit: Unit, fixed: dict[str, float], grid: list[dict[str, float]],
                shared: set[str]) -> dict[str, float]:
    """Top-level parameters of a run: the fixed ones, and ``shared`` ones from its first point
    (the run's points agree on them)."""
    first = grid[unit.points[0]]
    return {**fixed, **{p: first[p] for p in shared}}


def _dc_card(spec: Spec) -> str:
    """The nested .dc over the dc axes' sources."""
    sweep = []
    for axis in reversed(dc_axes(spec)):   # ngspice's first source varies fastest
        step = (axis.values[-1] - axis.values[0]) / (len(axis.values) - 1) \
            if len(axis.values) > 1 else 1.0
        sweep += [axis.dc_source, repr(axis.values[0]), repr(axis.values[-1]), repr(step)]
    return ".dc " + " ".join(sweep)


def _sample_instances(unit: Unit, spec: Spec, template: Template, fixed: dict[str, float],
                      grid: list[dict[str, float]], varying: list[str]
                      ) -> tuple[Callable[[list[str]], str], list[str]]:
    """A renderer of Monte Carlo samples as testbench instances under one nested .dc whose
    sources every instance shares, and its vectors (each instance's, over the sweep)."""
    swept = {a.param for a in dc_axes(spec)}
    starts = unit.points[::unit.instance_points]
    per_sample = [p for p in varying if p not in swept]
    differing = {p for p in per_sample if len({grid[i][p] for i in starts}) > 1}
    params = _run_params(unit, fixed, grid, set(per_sample) - differing)
    instances = [{p: grid[i][p] for p in sorted(differing)} for i in starts]
    sources = [a.dc_source for a in dc_axes(spec)]
    saves = [save_card(m.vector, n) for n in range(len(instances)) for m in spec.measures]

    def render(lines):
        return template.render(params, lines, [_dc_card(spec)], instances=instances,
                               save=sorted(set(saves)), shared_sources=sources)
    return render, sorted({vector_name(m.vector, n) for n in range(len(instances))
                           for m in spec.measures})


def _nested_dc(unit: Unit, spec: Spec, template: Template, fixed: dict[str, float],
               grid: list[dict[str, float]], varying: list[str]
               ) -> tuple[Callable[[list[str]], str], list[str]]:
    """A renderer (model lines -> netlist) of one .dc over the dc axes, and its vectors."""
    swept = dc_axes(spec)
    shared = set(varying) - {a.param for a in swept}
    params = _run_params(unit, fixed, grid, shared)
    return (lambda lines: template.render(params, lines, [_dc_card(spec)]),
            sorted({vector_name(m.vector) for m in spec.measures}))


def _instances(unit: Unit, spec: Spec, template: Template, fixed: dict[str, float],
               grid: list[dict[str, float]], varying: list[str]
               ) -> tuple[Callable[[list[str]], str], list[str]]:
    """A renderer (model lines -> netlist) of one testbench instance per point under one .op
    or .tran, and its vectors."""
    shared = {p for p in varying if p in template.global_params}
    params = _run_params(unit, fixed, grid, shared)
    instances = [{p: grid[i][p] for p in varying if p not in shared} for i in unit.points]
    if spec.analysis == "tran":
        analysis = f".tran {spec.tran_step!r} {spec.tran_stop!r}"
        if spec.tran_max_step:
            analysis += f" 0 {spec.tran_max_step!r}"
    else:
        analysis = ".op"
    saves = [save_card(m.vector, n) for n in range(len(instances)) for m in spec.measures]

    def render(lines):
        return template.render(params, lines, [analysis], instances=instances,
                               save=sorted(set(saves)))
    vectors = sorted({vector_name(m.vector, n) for n in range(len(instances))
                      for m in spec.measures})
    if spec.analysis == "tran":
        vectors.append("time")
    return render, vectors
