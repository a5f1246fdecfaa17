"""`gcsim bench growth`: tiny real runs (builtin, seconds) give the JSON shape and the plot;
bad options give one line. Performance is measured by these commands, never asserted."""

import json

import pytest

from gcsim.bench.growth import empty_netlist

from conftest import error_line, invoke

PNG = b"\x89PNG\r\n\x1a\n"


def run_json(*args):
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def check_machine(report):
    for key in ("machine_before", "machine_after"):
        assert report[key]["cores"] >= 1
        assert len(report[key]["load_average"]) == 3
    assert report["command"].startswith("gcsim bench growth ")


def test_validate_reports_each_size_against_the_smallest(tmp_path):
    plot = tmp_path / "validate.png"
    report = run_json("bench", "growth", "validate", "--rows", "2,1", "--cols", "2",
                      "--plot", plot)
    check_machine(report)
    assert report["rows"] == [1, 2] and report["plot"] == str(plot)
    assert plot.read_bytes().startswith(PNG)
    (entry,) = report["models"]
    assert entry["models"] == "builtin:tt"
    assert entry["fixed"]["runs"] == 2 * report["jobs"]
    # The empty run has only its own source and resistor left: a few equations.
    assert entry["fixed"]["process_cpu_s"] > 0 and entry["fixed"]["equations"] <= 3
    small, large = entry["sizes"]
    assert small["wall_ratio"] == small["cpu_ratio"] == 1.0 and large["size_ratio"] == 2.0
    # A tile of R rows and C columns runs C K columns and R V columns.
    assert (small["runs"], large["runs"]) == (3, 4)
    for size in entry["sizes"]:
        assert size["wall_s"] > 0 and size["cpu_s"] > 0
        for part in ("k_run", "v_run"):
            run = size[part]
            assert run["cpu_s"] > 0 and run["equations"] > 0 and run["timepoints"] > 0
            assert {"device_eval_s", "sparse_s", "op_s", "load_s"} <= set(run)
    # One more cell per K column adds circuit equations (ngspice's own count).
    assert large["k_run"]["equations"] > small["k_run"]["equations"]
    assert "--rows 1,2" in report["command"]


def test_simulate_reports_both_series_against_the_floor(tmp_path):
    plot = tmp_path / "simulate.png"
    report = run_json("bench", "growth", "simulate", "--tokens", "128,256", "--windows",
                      "64,128", "--window", "64", "--at-tokens", "256", "--repeats", "1",
                      "--plot", plot)
    check_machine(report)
    assert plot.read_bytes().startswith(PNG)
    assert [p["tokens"] for p in report["against_tokens"]] == [128, 256]
    assert [p["window"] for p in report["against_window"]] == [64, 128]
    for point in report["against_tokens"] + report["against_window"]:
        assert point["floor_s"] > 0
        for mode in ("paper", "fitted"):
            assert point[f"{mode}_s"] > 0
            assert point[f"{mode}_over_floor"] == pytest.approx(
                point[f"{mode}_s"] / point["floor_s"], rel=0.01)
    assert report["against_tokens"][0]["paper_growth"] == 1.0
    assert report["against_tokens"][1]["size_ratio"] == 2.0


def test_sweep_reports_points_per_second_against_one_point_per_run(tmp_path):
    plot = tmp_path / "sweep.png"
    report = run_json("bench", "growth", "sweep", "--batches", "1,4", "--grid", "2,4",
                      "--plot", plot)
    check_machine(report)
    assert plot.read_bytes().startswith(PNG)
    assert report["points"] == 8
    (entry,) = report["models"]
    one, four = entry["batches"]
    assert (one["runs"], four["runs"]) == (8, 2)
    assert one["throughput_ratio"] == 1.0 and four["points_per_s"] > 0
    assert four["run"]["equations"] > one["run"]["equations"]
    assert entry["fixed"]["process_cpu_s"] > 0


def test_text_output_names_the_baseline_and_the_load(tmp_path):
    result = invoke("bench", "growth", "sweep", "--batches", "1,2", "--grid", "2,2")
    assert result.exit_code == 0, result.output
    assert "x base" in result.stdout and "load average" in result.stdout


@pytest.mark.parametrize("args, words", [
    (["validate", "--rows", "8,x"], "not a whole number"),
    (["validate", "--rows", "0"], "outside"),
    (["validate", "--rows", "8,8"], "repeats"),
    (["validate", "--models", "nonsense"], "nonsense"),
    (["validate", "--plot", "/nonexistent-folder/v.png"], "does not exist"),
    (["simulate", "--plot", "v.txt"], ".png"),
    (["simulate", "--modes", "paper,ideal"], "one of paper, fitted"),
    (["simulate", "--windows", "4096", "--at-tokens", "1024"], "--at-tokens"),
    (["sweep", "--grid", "3"], "two numbers"),
    (["sweep", "--batches", ""], "not a whole number"),
])
def test_bad_options_are_one_line(args, words):
    assert words in error_line(invoke("bench", "growth", *args))


@pytest.mark.parametrize("command", [[], ["validate"], ["simulate"], ["sweep"]])
def test_help_has_an_example(command):
    result = invoke("bench", "growth", *command, "--help")
    assert result.exit_code == 0 and "Example" in result.output


def test_empty_netlist_keeps_the_library_and_drops_instances():
    netlist = "\n".join([
        "* title", ".lib /models/x.lib tt", ".param w=1u", ".subckt cell a b",
        "m1 a b 0 0 nch w={w}", "+ l=1u", ".ends cell", "x1 n1 n2 cell", "+ extra=1",
        "v1 n1 0 1", ".ic v(n1)=0", ".save v(n1)", ".control", "run", ".endc",
        ".tran 1p 1n", ".end"])
    text = empty_netlist(netlist).splitlines()
    assert text[:7] == ["* title", ".lib /models/x.lib tt", ".param w=1u", ".subckt cell a b",
                        "m1 a b 0 0 nch w={w}", "+ l=1u", ".ends cell"]
    assert not any(line.startswith(("x1", "+ extra", "v1", ".ic", ".save", ".control", "run",
                                    ".tran 1p")) for line in text)
    assert text[-2:] == [".tran 1n 2n", ".end"]
