"""The committed bundles (fits/builtin/, fits/sky130/) are exactly what `gcsim regen` produces
on their designs (dates aside).

This reruns every characterisation spec through ngspice from an empty cache, then every fit,
and compares field by field; it is the check that keeps fits/ in step with the netlists,
specs and fitters.
"""

import pytest
from click.testing import CliRunner

from gcsim.core import resources
from gcsim.cli import main
from gcsim.pipeline import compare_fits

from conftest import HAVE_SKY130


def test_committed_fits_match_a_fresh_regen(tmp_path):
    result = CliRunner().invoke(main, ["regen", "--check", "--reports", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"{resources.fits_for('builtin')} matches a fresh regen" in result.output


@pytest.mark.skipif(not HAVE_SKY130, reason="sky130 models not installed: run 'make sky130'")
def test_committed_sky130_fits_match_a_fresh_regen(tmp_path):
    """About a minute from an empty cache on 2 cores (the library loads trimmed)."""
    result = CliRunner().invoke(main, ["regen", "--design", "sky130", "--check", "--reports",
                                       str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"{resources.fits_for('sky130')} matches a fresh regen" in result.output


def test_compare_fits_reports_a_changed_number(tmp_path):
    import json
    import shutil

    copy = tmp_path / "fits"
    shutil.copytree(resources.FITS, copy)
    assert compare_fits(resources.FITS, copy) == []
    record = json.loads((copy / "decay.json").read_text())
    record["parameters"]["time_constant"]["value"] *= 1.001
    record["provenance"]["date"] = "1999-01-01"
    (copy / "decay.json").write_text(json.dumps(record))
    differences = compare_fits(resources.FITS, copy)
    assert len(differences) == 1 and "time_constant" in differences[0]
