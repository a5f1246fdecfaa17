"""Monte Carlo, temperatures and corners in specs, on real ngspice (builtin models).

tests/data/mc_pair.cir holds two diode-connected NMOS at a fixed current, so each gate
voltage moves by exactly its device's threshold shift: the table shows the mismatch itself.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gcsim.spice import process as models
from gcsim.characterize import spec
from gcsim.characterize.cache import ResultCache
from gcsim.core.errors import SpecError
from gcsim.characterize.sweep import Sweep

from conftest import DATA

DEVICES = {"a": {"role": "core_nmos", "dvth": "dvth_a", "w": "w1", "l": "l1"},
           "b": {"role": "core_nmos", "dvth": "dvth_b", "w": "w2", "l": "l2"}}


def mc_spec(runs=40, seed=7, axes=None, devices=DEVICES, **extra):
    raw = {"netlist": "mc_pair.cir", "analysis": {"type": "op", "batch": 400},
           "montecarlo": {"runs": runs, "seed": seed, "devices": devices},
           "axes": axes or [{"param": "i_bias", "column": "i_bias_A", "values": ["2u"]}],
           "measure": [{"column": "v_g1_V", "vector": "v(g1)"},
                       {"column": "v_g2_V", "vector": "v(g2)"}], **extra}
    return spec.from_dict(raw, name="mc", base=DATA)


def run(s, **kw):
    return Sweep(s, cache=ResultCache(enabled=False), progress=False, **kw).run()


def test_same_seed_is_bit_identical_and_other_seed_differs():
    first = run(mc_spec()).table
    second = run(mc_spec()).table
    pd.testing.assert_frame_equal(first, second, check_exact=True)
    other = run(mc_spec(seed=8)).table
    assert not np.array_equal(first["v_g1_V"], other["v_g1_V"])
    assert list(first.columns[:3]) == ["mc_run", "dvth_a_V", "dvth_b_V"]


def test_run_index_column_and_shared_sample_per_run():
    axes = [{"param": "i_bias", "column": "i_bias_A", "values": ["1u", "2u", "4u"]}]
    table = run(mc_spec(runs=5, axes=axes)).table
    assert table["mc_run"].dtype == np.int64
    assert table["mc_run"].tolist() == [r for r in range(5) for _ in range(3)]
    # One run is one sample of the circuit: its offsets hold at every sweep point.
    assert (table.groupby("mc_run")["dvth_a_V"].nunique() == 1).all()


def test_sigma_follows_pelgrom():
    s = mc_spec(runs=300)
    table = run(s).table
    a_vt = models.resolve("builtin").roles["core_nmos"].a_vt_mV_um
    for device, w, l in (("a", 200e-9, 100e-9), ("b", 400e-9, 200e-9)):
        expected = models.pelgrom_sigma_V(a_vt, w, l)
        drawn = table[f"dvth_{device}_V"].std()
        assert drawn == pytest.approx(expected, rel=0.15)   # 300 runs: 3 sigma of std is 12 %
        # The simulated gate voltage carries the drawn shift (the device sees it). BSIM4
        # also uses Vth in its mobility degradation, so the slope is near 1, not exactly 1.
        gate = table[f"v_g{'1' if device == 'a' else '2'}_V"]
        slope = np.polyfit(table[f"dvth_{device}_V"], gate, 1)[0]
        assert 0.9 < slope < 1.2
    # Four times the area, half the sigma: the same draws scale exactly with 1/sqrt(W*L).
    axes = [{"param": "w1", "column": "w1_m", "values": ["200n", "800n"]}]
    swept = run(mc_spec(runs=20, axes=axes)).table
    small = swept[swept.w1_m == 200e-9]["dvth_a_V"].to_numpy()
    large = swept[swept.w1_m == 800e-9]["dvth_a_V"].to_numpy()
    np.testing.assert_allclose(large, small / 2, rtol=1e-12)


def test_temperatures_and_cache_key_carries_mismatch(tmp_path):
    s = mc_spec(runs=2, temperatures=[27, 85])
    table = run(s).table
    assert table.columns[0] == "temperature_C"
    assert table["temperature_C"].tolist() == [27, 27, 85, 85]
    hot, cold = table[table.temperature_C == 85], table[table.temperature_C == 27]
    assert not np.allclose(hot["v_g1_V"].to_numpy(), cold["v_g1_V"].to_numpy())
    # Different seeds are different netlists, so different cache entries.
    cache = ResultCache(tmp_path / "c")
    Sweep(mc_spec(runs=2), cache=cache, progress=False).run()
    again = Sweep(mc_spec(runs=2, seed=99), cache=cache, progress=False).run()
    assert again.metadata["stats"]["cache_hits"] == 0


def test_montecarlo_spec_errors():
    with pytest.raises(SpecError, match="runs"):
        mc_spec(runs=0)
    with pytest.raises(SpecError, match="seed"):
        mc_spec(seed=-1)
    bad_role = {"a": dict(DEVICES["a"], role="flux_capacitor")}
    with pytest.raises(SpecError, match="not a device role"):
        mc_spec(devices=bad_role)
    bad_param = {"a": dict(DEVICES["a"], dvth="dvth_zz")}
    with pytest.raises(SpecError, match="declares no parameter 'dvth_zz'"):
        Sweep(mc_spec(devices=bad_param), progress=False)
    with pytest.raises(SpecError, match="montecarlo.devices: required"):
        Sweep(mc_spec(devices={}), progress=False)
    with pytest.raises(SpecError, match="also fixed or swept"):
        mc_spec(axes=[{"param": "dvth_a", "column": "x_V", "values": [0.0]}])


def test_the_docs_document_the_spec_keys():
    """The spec guide (docs/guide/specs.md) names every key, beside the generated reference."""
    readme = (Path(__file__).resolve().parent.parent / "docs" / "guide" / "specs.md").read_text()
    keys = list(spec.TOP_KEYS) + list(spec.MONTECARLO_KEYS) + list(spec.DEVICE_KEYS)
    forms = ("`{}`", "`{},", " {}`", "[{}]", "[[{}]]", "[{}.", ".{}.")
    missing = [key for key in keys if key != "description"
               and not any(form.format(key) in readme for form in forms)]
    assert not missing, f"docs/guide/specs.md lacks {missing}"
