"""The documentation builds: `mkdocs build --strict` fails on a broken link or anchor, a CLI
reference that cannot be generated, or JSON Schemas in docs/schemas/ that no longer match
gcsim.schemas (the build runs with GCSIM_DOCS_CHECK_SCHEMAS=1, so it checks and writes
nothing into docs/)."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _command_paths(command, prefix=("gcsim",)):
    yield prefix
    for name, sub in getattr(command, "commands", {}).items():
        if not sub.hidden:
            yield from _command_paths(sub, prefix + (name,))


def test_docs_build_strict(tmp_path):
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (make docs, or pip install -e .[docs])")
    site = tmp_path / "site"
    env = dict(os.environ, GCSIM_DOCS_CHECK_SCHEMAS="1", NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr

    # Every command, at every level, has its section in the generated CLI reference.
    from gcsim.cli import main
    cli = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    for path in _command_paths(main):
        assert f'id="{"-".join(path)}"' in cli, f"{' '.join(path)} missing from the CLI reference"
    assert "Sentinel.UNSET" not in cli

    # Every registered file format has its section and its schema.
    from gcsim.schemas import FORMATS
    formats = (site / "reference" / "formats" / "index.html").read_text(encoding="utf-8")
    for name in FORMATS:
        assert (site / "schemas" / f"{name}.schema.json").is_file()
        assert f"{name}.schema.json" in formats
    if not FORMATS:
        assert "No formats are registered yet" in formats


def test_readme_links_into_docs_exist():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(((?:docs/)[^)#\s]+)(?:#[^)]*)?\)", readme)
    assert links, "the README links into docs/"
    missing = [link for link in links if not (ROOT / link).is_file()]
    assert not missing, f"README links to missing files: {missing}"


def test_format_reference_renders_nested_keys():
    pydantic = pytest.importorskip("pydantic", reason="pydantic is not installed")
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (make docs, or pip install -e .[docs])")
    spec = importlib.util.spec_from_file_location("docs_hook", ROOT / "docs" / "hooks" /
                                                  "reference.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)

    class Axis(pydantic.BaseModel):
        """One swept axis."""
        param: str = pydantic.Field(description="the template parameter")
        start: float | None = pydantic.Field(None, description="first value",
                                             json_schema_extra={"unit": "V"})

    class Spec(pydantic.BaseModel):
        """A sweep."""
        model_config = pydantic.ConfigDict(extra="forbid")
        netlist: str = pydantic.Field(description="the template")
        axes: list[Axis] = pydantic.Field(default_factory=list, description="the axes")
        roles: dict[str, Axis] = pydantic.Field(default_factory=dict, description="named")

    text = hook.render_format("spec", Spec, Spec.model_json_schema(), "../schemas/x.json")
    assert "A sweep." in text and "Keys not listed here are an error." in text
    assert "| `netlist` | string |  |  | yes | the template |" in text
    assert "| `axes[].start` | number \\| null | V | `null` | no | first value |" in text
    assert "| `roles.<key>.param` | string |  |  | yes | the template parameter |" in text
