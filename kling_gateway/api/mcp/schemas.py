"""Tool input schemas, derived from the protocol's request structs (the REST API's own).

A tool offers some of a struct's fields: the JSON types, defaults and nested shapes are
msgspec's schema of the struct, so the tools cannot drift from what the REST API decodes.
What a tool adds is for the agent reading it: which fields it must give, a description and
the allowed values of the protocol's enums. The schema is advice, not the check: the call's
arguments go through the REST path's validation, whose 400 names the field.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

JsonSchema = dict[str, Any]


def struct_schema(struct: type[msgspec.Struct]) -> JsonSchema:
    """The object schema of ``struct`` itself at the root, its nested structs in ``$defs``."""
    schema = msgspec.json.schema(struct)
    defs: dict[str, Any] = schema.get("$defs", {})
    name = schema["$ref"].rsplit("/", 1)[-1]
    root: JsonSchema = copy.deepcopy(defs.pop(name))
    root.pop("title", None)
    if defs:
        root["$defs"] = defs
    return root


def tool_schema(
    struct: type[msgspec.Struct],
    *,
    omit: Iterable[str] = (),
    required: Iterable[str] = (),
    notes: Mapping[str, Mapping[str, Any]] | None = None,
    renames: Mapping[str, str] | None = None,
) -> JsonSchema:
    """``struct``'s schema without the fields in ``omit``, with ``required`` and ``notes``
    (extra keywords per field: ``description``, ``enum``), and the fields of ``renames``
    offered under another name (all three name the struct's fields). A name that is no field
    of the struct is a programming error, refused here."""
    schema = struct_schema(struct)
    properties: dict[str, Any] = schema["properties"]
    renames = renames or {}
    named = {*omit, *required, *(notes or {}), *renames}
    unknown = sorted(named - set(properties))
    if unknown:
        raise ValueError(f"{struct.__name__} has no field(s) {', '.join(unknown)}")
    for name in omit:
        del properties[name]
    for name, extra in (notes or {}).items():
        if name in properties:  # notes may be shared by tools that omit some of the fields
            properties[name] = {**properties[name], **extra}
    schema["properties"] = {renames.get(k, k): v for k, v in properties.items()}
    schema["required"] = [renames.get(name, name) for name in required]
    schema.pop("description", None)
    return _prune_defs(schema)


def _prune_defs(schema: JsonSchema) -> JsonSchema:
    """Drop the ``$defs`` no remaining field refers to (an omitted field's shapes)."""
    defs: dict[str, Any] = schema.get("$defs", {})
    used: set[str] = set()
    pending = [schema["properties"]]
    while pending:
        refs = _refs(pending.pop())
        for ref in refs - used:
            used.add(ref)
            pending.append(defs[ref])
    kept = {name: value for name, value in defs.items() if name in used}
    schema.pop("$defs", None)
    if kept:
        schema["$defs"] = kept
    return schema


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {str(v).rsplit("/", 1)[-1] for k, v in node.items() if k == "$ref"}
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node)) if node else set()
    return set()
