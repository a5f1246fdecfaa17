"""MkDocs hook: the generated reference pages.

1. The file-format reference, generated from gcsim's pydantic models.

`gcsim.schemas.FORMATS` maps a format's name to its pydantic (v2) model. For each format this
hook renders, in place of the `<!-- gcsim:formats -->` placeholder of a page:

* a heading (the format's name), the model's docstring, a link to its JSON Schema;
* a table of every key: dotted path (`axes[].param` for a list of tables, `roles.<key>.model`
  for a table keyed by name), type, unit, default, whether it is required, and description.

It also writes each model's JSON Schema to `docs/schemas/NAME.schema.json` (only when the text
changed, so `mkdocs serve` does not rebuild in a loop) and removes the schema files of formats
that are no longer registered. With GCSIM_DOCS_CHECK_SCHEMAS=1 (the docs test sets it) it
writes nothing and fails instead when a committed schema file is missing or stale.

2. Fix-ups for the command-line reference that the `mkdocs-click` extension generates (on the
pages that hold a `::: mkdocs-click` block only), as a Markdown preprocessor that runs after
mkdocs-click's own:

* click >= 8.3 reports an unset default as `Sentinel.UNSET`, which mkdocs-click 0.9 prints
  (mkdocs/mkdocs-click#95); unset defaults (and `None`) become an empty cell;
* a help text's `Example:` / `Examples:` block (indented command lines) becomes a code block
  instead of one run-on paragraph;
* the build machine's checkout path in defaults (e.g. `--specs`) becomes `<repository>`.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from pathlib import Path
from typing import Any

from markdown.extensions import Extension
from markdown.preprocessors import Preprocessor
from mkdocs.exceptions import PluginError

PLACEHOLDER = "<!-- gcsim:formats -->"
SCHEMA_DIR = "schemas"
SCHEMA_SUFFIX = ".schema.json"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
CHECK_ENV = "GCSIM_DOCS_CHECK_SCHEMAS"

_formats: dict[str, Any] | None = None
_schemas: dict[str, dict] = {}
_state: dict[str, Any] = {"cli_page": False, "roots": ()}


# --- loading the models and writing their schemas -------------------------------------------

def _load_formats() -> dict[str, Any]:
    try:
        module = importlib.import_module("gcsim.schemas")
    except Exception as exc:  # the build must say why, in one line
        raise PluginError(f"docs/hooks/reference.py: cannot import gcsim.schemas: "
                          f"{type(exc).__name__}: {exc}") from exc
    formats = getattr(module, "FORMATS", None)
    if not isinstance(formats, dict):
        raise PluginError("docs/hooks/reference.py: gcsim.schemas.FORMATS must be a dict "
                          "of name -> pydantic model")
    for name, model in formats.items():
        if not hasattr(model, "model_json_schema"):
            raise PluginError(f"gcsim.schemas.FORMATS[{name!r}] is not a pydantic v2 model "
                              f"(got {model!r})")
    return dict(formats)


def _schema_text(schema: dict) -> str:
    return json.dumps({"$schema": JSON_SCHEMA_DIALECT, **schema}, indent=2,
                      ensure_ascii=False) + "\n"


def _sync_schema_files(schema_dir: Path, schemas: dict[str, dict], check: bool) -> None:
    wanted = {f"{name}{SCHEMA_SUFFIX}": _schema_text(schema) for name, schema in schemas.items()}
    present = {p.name for p in schema_dir.glob(f"*{SCHEMA_SUFFIX}")} if schema_dir.is_dir() \
        else set()
    stale = sorted(name for name, text in wanted.items()
                   if not (schema_dir / name).is_file()
                   or (schema_dir / name).read_text(encoding="utf-8") != text)
    extra = sorted(present - set(wanted))
    if check:
        if stale or extra:
            problems = [f"{n} missing or stale" for n in stale] + \
                       [f"{n} has no format in gcsim.schemas.FORMATS" for n in extra]
            raise PluginError(f"docs/{SCHEMA_DIR}/: {'; '.join(problems)}. Run `make docs` "
                              f"and commit docs/{SCHEMA_DIR}/.")
        return
    if stale:
        schema_dir.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (schema_dir / name).write_text(wanted[name], encoding="utf-8")
    for name in extra:
        (schema_dir / name).unlink()


def on_config(config, **kwargs):
    global _formats, _schemas
    _formats = _load_formats()
    _schemas = {}
    for name, model in _formats.items():
        try:
            _schemas[name] = model.model_json_schema()
        except Exception as exc:
            raise PluginError(f"gcsim.schemas.FORMATS[{name!r}]: cannot build its JSON "
                              f"Schema: {type(exc).__name__}: {exc}") from exc
    check = os.environ.get(CHECK_ENV, "") not in ("", "0")
    _sync_schema_files(Path(config["docs_dir"]) / SCHEMA_DIR, _schemas, check)
    root = Path(config["config_file_path"]).parent
    _state["roots"] = tuple(sorted({str(root), str(root.resolve())}, key=len, reverse=True))
    config["markdown_extensions"].append(_CliFixupsExtension())
    return config


# --- fix-ups of the mkdocs-click output ----------------------------------------------------

_EXAMPLE_HEADING = re.compile(r"^Examples?:\s*$")
_UNSET_CELL = re.compile(r"\|\s*(`Sentinel\.UNSET`|None)\s*\|\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def fix_cli_lines(lines: list[str], roots: tuple[str, ...] = ()) -> list[str]:
    out: list[str] = []
    in_fence = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if _FENCE.match(line):
            in_fence = not in_fence
        if not in_fence and _EXAMPLE_HEADING.match(line):
            block = []
            j = i + 1
            while j < len(lines) and lines[j].startswith("  ") and lines[j].strip():
                block.append(lines[j][2:])
                j += 1
            if block:
                out += [line, "", "```sh", *block, "```", ""]
                i = j
                continue
        if not in_fence and line.startswith("| `"):
            line = _UNSET_CELL.sub("|  |", line)
            for root in roots:
                line = line.replace(f"`{root}/", "`<repository>/").replace(f"`{root}`",
                                                                          "`<repository>`")
        out.append(line)
        i += 1
    return out


class _CliFixups(Preprocessor):
    def run(self, lines: list[str]) -> list[str]:
        if not _state["cli_page"]:
            return lines
        return fix_cli_lines(lines, _state["roots"])


class _CliFixupsExtension(Extension):
    def extendMarkdown(self, md):
        # mkdocs-click's preprocessor has priority 141; fenced code blocks are found at 25-30.
        md.preprocessors.register(_CliFixups(md), "gcsim_cli_fixups", 120)


# --- rendering --------------------------------------------------------------------------------

def _resolve(node: dict, defs: dict) -> dict:
    """Follow a $ref (keeping the referring node's own keys, which take precedence)."""
    seen = set()
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if ref in seen or not ref.startswith("#/$defs/"):
            break
        seen.add(ref)
        target = defs.get(ref[len("#/$defs/"):], {})
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _ref_name(node: dict) -> str | None:
    ref = node.get("$ref", "") if isinstance(node, dict) else ""
    return ref.rsplit("/", 1)[-1] if ref.startswith("#/$defs/") else None


def _variants(node: dict) -> list[dict]:
    for key in ("anyOf", "oneOf"):
        if key in node:
            return list(node[key])
    return [node]


def _is_table(node: dict) -> bool:
    return "properties" in node


def _constraints(node: dict) -> str:
    parts = []
    for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"),
                      ("exclusiveMaximum", "<")):
        if key in node:
            parts.append(f"{sign} {node[key]}")
    if "minItems" in node:
        parts.append(f"at least {node['minItems']} item(s)")
    if "maxItems" in node:
        parts.append(f"at most {node['maxItems']} item(s)")
    if "minLength" in node:
        parts.append(f"length ≥ {node['minLength']}")
    if "maxLength" in node:
        parts.append(f"length ≤ {node['maxLength']}")
    if "pattern" in node:
        parts.append(f"matches `{node['pattern']}`")
    return ", ".join(parts)


def _type_name(node: dict, defs: dict, depth: int = 0) -> str:
    if depth > 8:
        return "…"
    if "$ref" in node and set(node) <= {"$ref", "description", "title", "default", "unit"}:
        name = _ref_name(node)
        target = _resolve(node, defs)
        return f"{name} table" if _is_table(target) else _type_name(target, defs, depth + 1)
    if "const" in node:
        return f"`{json.dumps(node['const'], ensure_ascii=False)}`"
    if "enum" in node:
        return " | ".join(f"`{json.dumps(v, ensure_ascii=False)}`" for v in node["enum"])
    if "anyOf" in node or "oneOf" in node:
        names = []
        for variant in _variants(node):
            name = _type_name(variant, defs, depth + 1)
            if name not in names:
                names.append(name)
        return " | ".join(names)
    kind = node.get("type")
    if isinstance(kind, list):
        return " | ".join(kind)
    if kind == "array":
        items = node.get("items")
        if isinstance(items, dict) and items:
            text = f"list of {_plural(_type_name(items, defs, depth + 1))}"
        elif "prefixItems" in node:
            text = "[" + ", ".join(_type_name(i, defs, depth + 1)
                                   for i in node["prefixItems"]) + "]"
        else:
            text = "list"
    elif kind == "object":
        extra = node.get("additionalProperties")
        if _is_table(node):
            text = f"{node['title']} table" if node.get("title") else "table"
        elif isinstance(extra, dict) and extra:
            text = f"table of {_plural(_type_name(extra, defs, depth + 1))}"
        else:
            text = "table"
    elif kind:
        text = str(kind)
        if node.get("format"):
            text += f" ({node['format']})"
    else:
        text = "any"
    constraints = _constraints(node)
    return f"{text}, {constraints}" if constraints else text


def _plural(name: str) -> str:
    return name + "s" if name.endswith(" table") else name


def _join(path: str, segment: str) -> str:
    return f"{path}.{segment}" if path else segment


def _cell(text: Any) -> str:
    text = " ".join(str(text).split())
    return text.replace("|", "\\|")


def _default(prop: dict) -> str:
    if "default" not in prop:
        return ""
    text = json.dumps(prop["default"], ensure_ascii=False)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"`{text}`"


def _rows(node: dict, defs: dict, prefix: str, stack: tuple[str, ...]) -> list[list[str]]:
    """Rows for the keys of one table node (its properties), recursing into nested tables."""
    rows: list[list[str]] = []
    required = set(node.get("required", []))
    for name, prop in node.get("properties", {}).items():
        path = _join(prefix, name)
        resolved = _resolve(prop, defs)
        description = prop.get("description") or resolved.get("description", "")
        unit = prop.get("unit") or resolved.get("unit", "")
        rows.append([f"`{path}`", _type_name(prop, defs), unit, _default(prop),
                     "yes" if name in required else "no", description])
        rows.extend(_children(prop, defs, path, stack))
    return rows


def _children(prop: dict, defs: dict, path: str, stack: tuple[str, ...]) -> list[list[str]]:
    """Rows for whatever tables a key holds: itself, its list items, its named entries."""
    rows: list[list[str]] = []
    if "anyOf" not in prop and "oneOf" not in prop and "$ref" not in prop:
        prop = _resolve(prop, defs)
    variants = [v for v in _variants(prop) if v.get("type") != "null"]
    many = len([v for v in variants if _is_table(_resolve(v, defs))]) > 1
    for variant in variants:
        ref = _ref_name(variant)
        if ref and ref in stack:
            continue  # a recursive model: its keys are listed where it first appears
        inner_stack = stack + ((ref,) if ref else ())
        node = _resolve(variant, defs)
        if _is_table(node):
            sub = _rows(node, defs, path, inner_stack)
            if many:
                label = node.get("title") or ref or "variant"
                sub = [row[:5] + [f"({label}) {row[5]}"] for row in sub]
            rows.extend(sub)
        elif node.get("type") == "array" and isinstance(node.get("items"), dict):
            rows.extend(_children(node["items"], defs, f"{path}[]", inner_stack))
        elif node.get("type") == "object" and isinstance(node.get("additionalProperties"),
                                                         dict):
            rows.extend(_children(node["additionalProperties"], defs, _join(path, "<key>"),
                                  inner_stack))
    return rows


def render_format(name: str, model: Any, schema: dict, schema_link: str) -> str:
    defs = schema.get("$defs", {})
    root_ref = _ref_name(schema)
    if root_ref:  # pydantic puts a recursive root model in $defs and refers to it
        schema = _resolve(schema, defs)
    doc = schema.get("description") or (model.__doc__ or "").strip()
    lines = [f"### `{name}`", ""]
    if doc:
        lines += [doc.strip(), ""]
    notes = [f"Model `{model.__name__}`; JSON Schema: [`{name}{SCHEMA_SUFFIX}`]({schema_link})."]
    if schema.get("additionalProperties") is False:
        notes.append("Keys not listed here are an error.")
    lines += [" ".join(notes), ""]
    if _is_table(schema):
        rows = _rows(schema, defs, "", (root_ref or schema.get("title", ""),))
    else:  # a root model: a list or a keyed table of tables, or a single value
        rows = [["(the file)", _type_name(schema, defs), schema.get("unit", ""), "", "yes",
                 ""]]
        rows += _children(schema, defs, "", ())
    if rows:
        lines += ["| key | type | unit | default | required | description |",
                  "|---|---|---|---|---|---|"]
        lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    else:
        lines.append("No keys.")
    return "\n".join(lines) + "\n"


def render_formats(page_src_uri: str) -> str:
    if not _formats:
        return ("*No formats are registered yet: `gcsim.schemas.FORMATS` is empty. This "
                "section lists each file format, its keys and its JSON Schema once the "
                "models are added there.*\n")
    depth = page_src_uri.count("/")
    up = "../" * depth
    parts = [render_format(name, model, _schemas[name], f"{up}{SCHEMA_DIR}/{name}{SCHEMA_SUFFIX}")
             for name, model in _formats.items()]
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files, **kwargs):
    _state["cli_page"] = "::: mkdocs-click" in markdown
    if PLACEHOLDER not in markdown:
        return markdown
    return markdown.replace(PLACEHOLDER, render_formats(page.file.src_uri))
