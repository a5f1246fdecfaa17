"""The base of the pydantic models that check gcsim's user files (specs, process files):
strict types, no unknown keys, and every error as one line naming the file and key path."""

from __future__ import annotations

import re
import types
import typing
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from gcsim.core.errors import SpecError
from gcsim.core.values import shown


class TableError(ValueError):
    """A problem found while validating a table, at ``path`` below the table (keys and list
    indices). A ValueError, so pydantic records it as that table's error and goes on."""

    def __init__(self, message: str, *path: str | int):
        super().__init__(message)
        self.path = path


def _drop_nulls(schema: dict, model: type) -> None:
    """TOML has no null: an optional key is one left out. So the JSON Schema offers no null
    and no ``default: null`` for it (pydantic writes both for ``X | None = None``)."""
    for prop in schema.get("properties", {}).values():
        variants = prop.get("anyOf")
        if variants and {"type": "null"} in variants:
            rest = [v for v in variants if v != {"type": "null"}]
            del prop["anyOf"]
            if len(rest) == 1:
                prop.update({k: v for k, v in rest[0].items() if k not in prop})
            else:
                prop["anyOf"] = rest
        if "default" in prop and prop["default"] is None:
            del prop["default"]


class FileTable(BaseModel):
    """Base of the models of gcsim's user files: strict types, no unknown keys.

    A table's unknown keys are reported before its values (a misspelt key is the likelier
    fault than the missing one it stands for). A missing key is reported as 'required', or
    with its message in ``required_hints``."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False,
                              json_schema_extra=_drop_nulls)
    required_hints: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data: Any) -> Any:
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise TableError("expected a table")
        for key in data:
            if key not in cls.model_fields:
                raise TableError(f"unknown key (allowed: {', '.join(cls.model_fields)})",
                                 key if isinstance(key, str) else shown(key))
        return data


def _without_none(kind: Any) -> Any:
    args = [arg for arg in typing.get_args(kind) if arg is not type(None)]
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return kind


def _table_holding(model: type[FileTable], loc: tuple) -> type[FileTable] | None:
    """The model of the table in which the key at the end of ``loc`` lives, found by
    following ``loc`` through ``model``'s field types (None if it leads out of the tables)."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, str) and isinstance(current, type) and \
                issubclass(current, FileTable):
            field_info = current.model_fields.get(part)
            current = field_info.annotation if field_info else None
        else:  # an item of a list, or a named table in a table of tables
            args = typing.get_args(current)
            current = args[-1] if args else None
        current = _without_none(current)
    is_table = isinstance(current, type) and issubclass(current, FileTable)
    return current if is_table else None


def key_path(loc: tuple | list) -> str:
    """('axes', 0, 'num') -> 'axes[0].num'. A key that is not a plain word is shown quoted
    and cut, so the message stays one line."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
            continue
        label = part if re.fullmatch(r"[A-Za-z0-9_]{1,100}", part) else shown(part)
        text += f".{label}" if text else label
    return text


def _reason(error: dict, model: type[FileTable]) -> tuple[str, tuple]:
    """The message of one pydantic error and any path below its location."""
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, TableError):
        return str(cause), cause.path
    if isinstance(cause, Exception):
        return str(cause), ()
    kind, given = error["type"], shown(error.get("input"))
    if kind == "missing":
        table = _table_holding(model, tuple(error["loc"]))
        return (table.required_hints if table else {}).get(error["loc"][-1], "required"), ()
    if kind == "literal_error":
        return f"expected {error['ctx']['expected']}, got {given}", ()
    expected = {"string_type": "a string", "bool_type": "true or false",
                "int_type": "an integer", "float_type": "a number",
                "finite_number": "a finite number", "list_type": "a list",
                "dict_type": "a table", "model_type": "a table"}.get(kind)
    if expected:
        return f"expected {expected}, got {given}", ()
    message = error["msg"]
    return message[:1].lower() + message[1:], ()


def schema_error(exc: ValidationError, where: str, model: type[FileTable]) -> SpecError:
    """``model``'s ValidationError as gcsim's one-line message: ``WHERE: key.path: what``,
    for the first error (the others often follow from it)."""
    error = exc.errors(include_url=False)[0]
    message, below = _reason(error, model)
    path = key_path(tuple(error["loc"]) + below)
    message = " ".join(message.split())     # one line, whatever a reason quotes
    return SpecError(f"{where}: {path}: {message}" if path else f"{where}: {message}")


def validated(model: type[FileTable], raw: Any, where: str) -> Any:
    """``raw`` (a parsed TOML table) checked against ``model``; raise SpecError, one line,
    naming ``where`` (the file) and the key."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise schema_error(exc, where, model) from None
