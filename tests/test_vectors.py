"""Measure vectors are checked against the template before any ngspice run (issue 15): a typo
such as v(outt) or i(VINN) is refused in one line that names the spec, the key and the close
names, instead of failing every point of a sweep that may take hours."""

import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from gcsim.characterize import spec as spec_module
from gcsim.characterize.plan import MAX_VECTOR, check_vectors
from gcsim.cli import main
from gcsim.core import resources
from gcsim.core.errors import SpecError
from gcsim.spice import engine
from gcsim.spice.template import Template

TEMPLATE = """\
* vec.cir: a divider inside a subcircuit, and a few elements of other kinds
.param v_in=0.5
.subckt div a b
R1 a mid 1k
R2 mid b 1k
.ends div
VIN in 0 {v_in}
X1 in 0 div
E1 out 0 in 0 2
R3 out 0 1k
.op
.end
"""


def spec_text(vector: str) -> str:
    return f"""\
netlist = "vec.cir"
[analysis]
type = "op"
[[axes]]
param = "v_in"
column = "v_in_V"
values = [0.2, 0.4]
[[measure]]
column = "v_out_V"
vector = "v(out)"
[[measure]]
column = "probe"
vector = "{vector}"
"""


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def work(tmp_path, monkeypatch):
    (tmp_path / "vec.cir").write_text(TEMPLATE)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def no_ngspice(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a refused spec reached ngspice")

    monkeypatch.setattr(engine, "run_many", refuse)
    monkeypatch.setattr(engine, "ngspice_version", lambda: "ngspice-test")


def refused(folder: Path, vector: str) -> str:
    """Run `gcsim sweep` on a spec measuring ``vector``: the one Error line, fast, no output."""
    (folder / "vec.toml").write_text(spec_text(vector))
    started = time.perf_counter()
    result = invoke("sweep", "vec.toml", "-o", "out.parquet", "--no-cache")
    elapsed = time.perf_counter() - started
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert elapsed < 5, elapsed
    assert not (folder / "out.parquet").exists() and not (folder / "out.json").exists()
    return lines[0]


def test_typo_node_is_refused_before_any_run(work, no_ngspice):
    line = refused(work, "v(outt)")
    assert line == ("Error: vec.toml: measure[1].vector: v(outt): vec.cir has no node outt "
                    "(close: out)")


def test_typo_source_is_refused_with_the_close_sources(work, no_ngspice):
    line = refused(work, "i(VINN)")
    assert line == ("Error: vec.toml: measure[1].vector: i(VINN): vec.cir has no voltage "
                    "source VINN (close: VIN)")


def test_a_name_nothing_is_close_to_lists_what_exists(work, no_ngspice):
    line = refused(work, "v(zzzz)")
    assert line.endswith("vec.cir has no node zzzz (nodes: in, out)")


def test_current_of_an_element_without_a_branch_is_refused(work, no_ngspice):
    assert "R3 is not a source whose current ngspice keeps" in refused(work, "i(R3)")
    assert "out is a node of vec.cir, not a voltage source (its voltage is v(out))" in \
        refused(work, "i(out)")


def test_unknown_subcircuit_instance_is_refused(work, no_ngspice):
    line = refused(work, "v(x2.mid)")
    assert line.endswith("v(x2.mid): vec.cir has no subcircuit instance x2 (instances: X1)")
    assert refused(work, "v(xx1.mid)").endswith("instance xx1 (close: X1)")


def test_ground_is_refused_it_has_no_vector(work, no_ngspice):
    # ngspice keeps no vector for node 0 (or gnd): every point of such a sweep would fail.
    for vector in ("v(0)", "v(gnd)", "v(GND)"):
        line = refused(work, vector)
        assert line.endswith(f"{vector} is ground: it is 0 V and ngspice keeps no vector for it")


def test_over_long_vector_is_refused(work, no_ngspice):
    line = refused(work, "v(" + "n" * MAX_VECTOR + ")")
    assert f"is longer than {MAX_VECTOR} characters" in line
    assert len(line) < 200


def test_node_inside_an_instance_is_measured(work):
    (work / "vec.toml").write_text(spec_text("v(X1.mid)"))
    result = invoke("sweep", "vec.toml", "-o", "out.parquet", "--no-cache")
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(work / "out.parquet")
    assert table["probe"].tolist() == pytest.approx([0.1, 0.2])


def test_names_are_compared_as_ngspice_does(work):
    (work / "vec.toml").write_text(spec_text("i( vin )"))
    result = invoke("sweep", "vec.toml", "-o", "out.parquet", "--no-cache")
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(work / "out.parquet")
    assert table["probe"].tolist() == pytest.approx([-0.1e-3, -0.2e-3])    # into the 2k divider


# ------------------------------------------------------------------------- plan level
def checked(template_text: str, vector: str, folder: Path) -> None:
    (folder / "t.cir").write_text(template_text)
    raw = {"netlist": "t.cir", "analysis": {"type": "op"},
           "measure": [{"column": "x", "vector": vector}]}
    spec = spec_module.from_dict(raw, name="t.toml", base=folder)
    check_vectors(spec, Template.load(spec.netlist))


def test_a_line_gcsim_cannot_read_lets_unknown_names_through(tmp_path):
    # An XSPICE A element's nodes are not read: a name it may hold is not refused.
    text = "* t\n.param p=1\nV1 a 0 {p}\nA1 [a] b amod\n.op\n.end\n"
    checked(text, "v(b)", tmp_path)
    checked(text, "i(Vother)", tmp_path)
    with pytest.raises(SpecError, match="is ground"):
        checked(text, "v(0)", tmp_path)


def test_global_nodes_are_nodes(tmp_path):
    checked("* t\n.param p=1\n.global vg\nV1 a 0 {p}\n.op\n.end\n", "v(vg)", tmp_path)


def test_element_kinds_are_read_by_their_letter(tmp_path):
    (tmp_path / "k.cir").write_text("""\
* kinds
.param p=1
V1 a 0 {p}
E1 e1p e1n a 0 2
E2 e2p 0 vol='2*V(a)'
E3 e3p 0 value = {V(a)}
G1 g1p 0 poly(2) a 0 c1 0 0 1 1
F1 f1p 0 V1 2
H1 h1p 0 V1 2
L1 a lmid 1n
Bv bvp 0 V = V(a) * 2
Bi bip 0 I = 1m
M1 md mg ms mb nmos w = 1u l=1u
Q1 qc qb qe npn
X1 xa xb sub params: w=1
X2 ya yb sub w={p * 2}
K1 L1 L2 0.9
.ic v(a)=0 v(nowhere)=0
.op
.end
""")
    template = Template.load(tmp_path / "k.cir")
    assert template.nodes() == {
        "0", "a", "e1p", "e1n", "e2p", "e3p", "g1p", "c1", "f1p", "h1p", "lmid", "bvp", "bip",
        "md", "mg", "ms", "mb", "qc", "qb", "qe", "xa", "xb", "ya", "yb"}
    assert template.branch_sources() == {"v1", "e1", "e2", "e3", "h1", "l1", "bv"}
    assert set(template.connectivity.instances) == {"x1", "x2"}
    assert template.connectivity.unread == ()


def test_every_shipped_spec_is_accepted():
    specs = sorted(resources.CHARACTERIZATION.glob("*.toml"))
    specs += [p for p in sorted((Path(__file__).parent / "data").glob("*.toml"))
              if not p.name.endswith(".roles.toml")]
    assert len(specs) >= 12
    for path in specs:
        spec = spec_module.load(path)
        check_vectors(spec, Template.load(spec.netlist))


def test_branch_currents_of_other_sources_are_read_from_instances(work):
    # Batched op/tran runs place the testbench once per point: E1's branch is e.xp0.e1#branch
    # there (a voltage source's v.xp0.vin#branch), so i(E1) is read, not failed at every point.
    (work / "vec.toml").write_text(spec_text("i(E1)"))
    result = invoke("sweep", "vec.toml", "-o", "out.parquet", "--no-cache")
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(work / "out.parquet")
    assert table["probe"].tolist() == pytest.approx([-0.4e-3, -0.8e-3])     # 2 V(in) on 1k
