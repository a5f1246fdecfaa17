"""The security model's guarantees, tried as an attacker would: nothing in a template, an
included file or a model library reaches ngspice as a command, however it is spelt; every case
ends in one line naming the file and line, exit 1, before any ngspice run, and no output."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from gcsim.cli import main

TEMPLATE = """\
* sec.cir: a resistive divider
.param r_top=1k r_bottom=1k
VIN in 0 1
R1 in out {r_top}
R2 out 0 {r_bottom}
.op
.end
"""
SPEC = """\
netlist = "sec.cir"
[analysis]
type = "op"
[[axes]]
param = "r_top"
column = "r_top_ohm"
values = [1000.0, 2000.0]
[[measure]]
column = "v_out_V"
vector = "v(out)"
"""


def sweep(tmp_path, template: str, extra_files: dict[str, str] | None = None):
    (tmp_path / "sec.cir").write_text(template)
    (tmp_path / "sec.toml").write_text(SPEC)
    for name, text in (extra_files or {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return CliRunner().invoke(main, ["sweep", str(tmp_path / "sec.toml"), "-o",
                                     str(tmp_path / "out.csv"), "-j", "1", "--no-cache"])


def refused(result, tmp_path, *fragments):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not (tmp_path / "out.csv").exists()
    assert not (tmp_path / "pwned").exists()
    return lines[0]


def with_lines(*lines: str) -> str:
    return TEMPLATE.replace(".op\n", "".join(f"{line}\n" for line in lines) + ".op\n")


TEMPLATE_CASES = {
    # ngspice reads dot-cards by prefix: each of these acts as a card gcsim would not see.
    "include by prefix (.incx)": (with_lines(".incx evil.inc"), "sec.cir:6", "'.incx'"),
    "include by prefix (.includes)": (with_lines(".includes evil.inc"), "sec.cir:6",
                                      "ngspice reads it as .include"),
    "control block by prefix (.controls)": (
        with_lines(".controls", "shell touch pwned", ".endc"), "sec.cir:6", "'.controls'"),
    "subcircuit end by prefix (.endsx)": (
        with_lines(".subckt inner a b", "R9 a b 1k", ".endsx"), "sec.cir:8", "'.endsx'"),
    "subcircuit by prefix (.subcktx)": (
        with_lines(".subcktx inner a b", "R9 a b 1k", ".ends"), "sec.cir:6", "'.subcktx'"),
    "library by prefix (.library)": (with_lines(".library evil.lib tt"), "sec.cir:6",
                                     "ngspice reads it as .lib"),
    "unknown dot-card": (with_lines(".frobnicate"), "sec.cir:6", "unknown dot-card"),
    "'*#' control comment": (with_lines("*#shell touch pwned"), "sec.cir:6", "'*#'"),
    "shell in a control block": (with_lines(".control", "shell touch pwned", ".endc"),
                                 "sec.cir:7", "'shell'"),
    "source in a control block": (with_lines(".control", "run", "source evil.cir", ".endc"),
                                  "sec.cir:8", "'source'"),
    "control block upper case": (with_lines(".CONTROL", "SHELL touch pwned", ".ENDC"),
                                 "sec.cir:7", "'SHELL'"),
    "unterminated control block": (with_lines(".control", "run"), "sec.cir:8", "'.op'"),
    "continued command line": (with_lines(".control", "run", "shel", "+l touch pwned", ".endc"),
                               "sec.cir:8", "'shel'"),
}


@pytest.mark.parametrize("case", sorted(TEMPLATE_CASES))
def test_template_commands_are_refused(tmp_path, case):
    template, *fragments = TEMPLATE_CASES[case]
    refused(sweep(tmp_path, template), tmp_path, *fragments)


def test_an_included_file_is_read_and_checked_at_depth_two(tmp_path):
    evil = ".subckt inner a b\nR9 a b 1k\n.ends\n.control\nshell touch pwned\n.endc\n"
    result = sweep(tmp_path, with_lines(".include sub/one.inc"),
                   {"sub/one.inc": ".include two.inc\n", "sub/two.inc": evil})
    refused(result, tmp_path, "two.inc:4", ".control")


def test_an_unknown_card_in_an_included_file_is_refused(tmp_path):
    result = sweep(tmp_path, with_lines(".include one.inc"), {"one.inc": ".incx three.inc\n"})
    refused(result, tmp_path, "one.inc:1", "'.incx'")


def test_an_include_of_a_device_is_refused(tmp_path):
    refused(sweep(tmp_path, with_lines(".include /dev/zero")), tmp_path, "/dev/zero",
            "not a regular file")


def test_a_hand_run_control_block_is_allowed_and_dropped(tmp_path):
    """The shipped templates carry `.control run / plot ... .endc` for hand runs: allowed."""
    result = sweep(tmp_path, with_lines(".control", "run", "plot v(out)", "print v(out)", ".endc"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out.csv").is_file()


# ----------------------------------------------------------------------------- check first
def test_regen_with_a_folder_of_no_specs_refuses_and_keeps_the_fits(tmp_path):
    """A stale table left in the reports folder must not be refitted over fits/."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "reports" / "sweeps").mkdir(parents=True)
    (tmp_path / "reports" / "sweeps" / "gain_cell_iv.parquet").write_bytes(b"stale")
    result = CliRunner().invoke(main, ["regen", "--specs", str(tmp_path / "specs"), "--fits",
                                       str(tmp_path / "fits"), "--reports",
                                       str(tmp_path / "reports")])
    assert result.exit_code == 1 and "no specs" in result.output, result.output
    assert not (tmp_path / "fits").exists()


@pytest.mark.parametrize("args", [
    ["sweep"], ["fit"], ["regen", "--jobs", "0"], ["run", "--jobs", "0"],
    ["energy", "--nope"], ["bench", "sweep", "--points", "x"], ["nosuch"],
    ["validate", "tile", "--jobs", "0"], ["simulate", "attention", "--tokens", "x"],
    ["export", "paper-coefficients"],
])
def test_usage_errors_are_one_line(args):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output


# ----------------------------------------------------------------------------- init files
@pytest.mark.parametrize("where", ["working folder", "HOME", "SPICE_USERINIT_DIR"])
def test_an_init_file_does_not_run(tmp_path, monkeypatch, where):
    """ngspice sources .spiceinit from SPICE_USERINIT_DIR, the working folder and HOME at
    start-up: a sweep (whose ngspice version probe starts ngspice even when every run is
    cached) runs none of them."""
    marker = tmp_path / "pwned"
    folder = tmp_path / "init"
    folder.mkdir()
    (folder / ".spiceinit").write_text(f"shell touch {marker}\n")
    (folder / "spice.rc").write_text(f"shell touch {marker}\n")
    if where == "working folder":
        monkeypatch.chdir(folder)
    elif where == "HOME":
        monkeypatch.setenv("HOME", str(folder))
    else:
        monkeypatch.setenv("SPICE_USERINIT_DIR", str(folder))
    monkeypatch.setenv("SPICE_SCRIPTS", str(folder))   # a spinit of the attacker's
    (folder / "spinit").write_text(f"shell touch {marker}\n")
    from gcsim.spice import version

    version.ngspice_version.cache_clear()
    result = sweep(tmp_path, TEMPLATE)
    assert result.exit_code == 0, result.output
    assert not marker.exists()


# ----------------------------------------------------------------------------- model libraries
DATA = __import__("pathlib").Path(__file__).resolve().parent / "data"
DEEP_LIB = """\
* deep.spice: the tiny library with its cards two includes deep
.lib tt
.include cards/one.inc
.endl tt
"""


def deep_library(tmp_path, cards: str) -> str:
    """A user library whose tt section includes cards/one.inc, which includes two.inc."""
    (tmp_path / "cards").mkdir(exist_ok=True)
    (tmp_path / "deep.spice").write_text(DEEP_LIB)
    roles = (DATA / "tiny_lib.roles.toml").read_text().replace('sections = ["tt", "ss"]',
                                                                'sections = ["tt"]')
    (tmp_path / "deep.roles.toml").write_text(roles)
    (tmp_path / "cards" / "one.inc").write_text(".include two.inc\n")
    (tmp_path / "cards" / "two.inc").write_text(cards)
    for name in ("mc_pair.cir",):
        (tmp_path / name).write_text((DATA / name).read_text())
    return str(tmp_path / "deep.spice") + ":tt"


TINY_TT = (".model tn nmos level=1 vto=0.40 kp=200u lambda=0.05\n"
           ".model tp pmos level=1 vto=-0.40 kp=80u lambda=0.05\n")
PAIR_SPEC = """\
netlist = "mc_pair.cir"
[analysis]
type = "op"
[[axes]]
param = "i_bias"
column = "i_bias_A"
values = ["1u", "4u"]
[[measure]]
column = "v_g1_V"
vector = "v(g1)"
"""


def pair_sweep(tmp_path, selector, cache_dir):
    (tmp_path / "pair.toml").write_text(PAIR_SPEC)
    return CliRunner().invoke(main, ["sweep", str(tmp_path / "pair.toml"), "--models", selector,
                                     "-o", str(tmp_path / "out.csv"), "-j", "1"],
                              env={"GCSIM_CACHE_DIR": str(cache_dir)})


@pytest.mark.parametrize("payload", [
    ".control\nshell touch {marker}\n.endc\n",
    ".controls\nshell touch {marker}\n.endc\n",
    "*#shell touch {marker}\n",
    ".incx {marker}.inc\n",
])
def test_a_command_two_includes_deep_in_a_library_is_refused(tmp_path, payload):
    marker = tmp_path / "pwned"
    selector = deep_library(tmp_path, TINY_TT + payload.format(marker=marker))
    result = pair_sweep(tmp_path, selector, tmp_path / "cache")
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "two.inc:3" in lines[0], result.output
    assert not marker.exists() and not (tmp_path / "out.csv").exists()


def test_a_model_card_changed_two_includes_deep_misses_the_cache(tmp_path):
    selector = deep_library(tmp_path, TINY_TT)
    first = pair_sweep(tmp_path, selector, tmp_path / "cache")
    assert first.exit_code == 0, first.output
    v_first = __import__("pandas").read_csv(tmp_path / "out.csv")["v_g1_V"].to_numpy()
    (tmp_path / "cards" / "two.inc").write_text(TINY_TT.replace("vto=0.40", "vto=0.50"))
    second = pair_sweep(tmp_path, selector, tmp_path / "cache")
    assert second.exit_code == 0 and "0 from cache" in second.output, second.output
    v_second = __import__("pandas").read_csv(tmp_path / "out.csv")["v_g1_V"].to_numpy()
    assert (v_second > v_first + 0.09).all()


# ----------------------------------------------------------------------------- stale cache
RC = """\
* rc.cir: an RC charging from 0 to 1 V, tau = 1 ns
.param r=1k c=1p
VIN in 0 PULSE(0 1 0 1p 1p 1 2)
R1 in out {r}
C1 out 0 {c}
.tran 10p 5n
.end
"""
RC_SPEC = """\
netlist = "rc.cir"
[analysis]
type = "tran"
step = "10p"
stop = "5n"
[[axes]]
param = "r"
column = "r_ohm"
values = [1000.0, 2000.0]
[[measure]]
column = "v_out_V"
vector = "v(out)"
{extra}
"""


@pytest.mark.parametrize("before, after", [
    ('at = "1n"', 'at = "3n"'),
    ("scale = 1.0", "scale = 2.0"),
    ("sample = { start = \"1n\", stop = \"4n\", num = 4 }",
     "sample = { start = \"1n\", stop = \"4n\", num = 7 }"),
])
def test_a_changed_measure_is_never_served_from_the_cache(tmp_path, before, after):
    (tmp_path / "rc.cir").write_text(RC)
    outputs = []
    for extra in (before, after):
        (tmp_path / "rc.toml").write_text(RC_SPEC.format(extra=extra))
        result = CliRunner().invoke(main, ["sweep", str(tmp_path / "rc.toml"), "-o",
                                           str(tmp_path / "out.parquet"), "-j", "1"],
                                    env={"GCSIM_CACHE_DIR": str(tmp_path / "cache")})
        assert result.exit_code == 0, result.output
        assert "0 from cache" in result.output, result.output
        outputs.append(__import__("pandas").read_parquet(tmp_path / "out.parquet"))
    assert not outputs[0].equals(outputs[1])


# ----------------------------------------------------------------------------- exhausting inputs
def _fifo(tmp_path, name):
    import os

    path = tmp_path / name
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("kind", ["device", "fifo"])
@pytest.mark.parametrize("command", ["sweep", "fit", "simulate", "validate", "table"])
def test_a_device_or_fifo_as_input_is_refused_at_once(tmp_path, kind, command):
    """/dev/zero would grow until memory runs out and a FIFO would hang: refused unread."""
    import os

    source = "/dev/zero" if kind == "device" else str(_fifo(tmp_path, "input"))
    args = {
        "sweep": ["sweep", source],
        "fit": ["simulate", "attention", "--mode", "fitted", "--fits",
                str(_bundle_with(tmp_path, source))],
        "simulate": ["simulate", "attention", "--q", source, "--k", source, "--v", source],
        "validate": ["validate", "tile", "--rows", "2", "--cols", "2", "--q", source, "--k",
                     source, "--v", source],
        "table": ["fit", "decay", source],
    }[command]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "not a regular file" in lines[0], result.output
    if kind == "fifo":
        assert os.path.exists(source)


def _bundle_with(tmp_path, source):
    """A copy of the committed bundle whose decay.json is `source` (a symlink to it)."""
    import shutil

    from gcsim.core import resources

    bundle = tmp_path / "bundle"
    shutil.copytree(resources.FITS, bundle)
    (bundle / "decay.json").unlink()
    (bundle / "decay.json").symlink_to(source)
    return bundle


# ----------------------------------------------------------------------------- bundle rule
def test_a_minimal_bundle_says_what_stands_in_for_each_missing_fit(tmp_path):
    from gcsim.fit.bundle import write_parameter_bundle
    from gcsim.hw import PAPER, load_fitted_models

    write_parameter_bundle(tmp_path / "b", [c * 1e-6 for c in PAPER.cell_coefficients_uA],
                           time_constant_s=5e-3, asymptote_V=0.45, slope_s_per_C=1e4,
                           t_max_s=15e-9, v_mid_V=PAPER.mid_rail_V, read_on_V=PAPER.read_on_V)
    notes = load_fitted_models(tmp_path / "b").notes["stand_ins"]
    assert [line.split(":")[0] for line in notes] == [
        "no sense_amp.json", "no signed_converter.json", "no mismatch.json",
        "no readout_loading.json", "no cell_conductance.json", "no write.json",
        "no read_disturb.json", "no design.toml"]
    assert load_fitted_models(__import__("gcsim.core.resources", fromlist=["FITS"]).FITS
                              ).notes["stand_ins"] == []


def test_the_cli_says_what_stands_in(tmp_path):
    from gcsim.fit.bundle import write_parameter_bundle
    from gcsim.hw import PAPER

    write_parameter_bundle(tmp_path / "b", [c * 1e-6 for c in PAPER.cell_coefficients_uA],
                           time_constant_s=5e-3, asymptote_V=0.45, slope_s_per_C=1e4,
                           t_max_s=15e-9, v_mid_V=PAPER.mid_rail_V, read_on_V=PAPER.read_on_V)
    args = ["simulate", "attention", "--mode", "fitted", "--fits", str(tmp_path / "b"),
            "--tokens", "64", "--window", "64"]
    text = CliRunner().invoke(main, args)
    assert text.exit_code == 0 and "note: fits bundle: no signed_converter.json" in text.output
    report = __import__("json").loads(CliRunner().invoke(main, [*args, "--json"]).output)
    assert len(report["stand_ins"]) == 8   # seven optional fits and the design
