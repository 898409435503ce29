"""JSON Schema (2020-12, the dialect of OpenAPI 3.1) from attrs classes, by their conventions.

Written here, over `attrs.fields`, rather than taken from a library: the maintained generators
read dataclasses or pydantic (apischema, pydantic), and the attrs ones (attrs-jsonschema 0.2,
2017) neither read field metadata nor know `X | None` or `Literal`. The conventions read:

- the class docstring is the schema's `description`; `metadata={"doc": ...}` a field's;
- `Literal[...]` is an `enum`; `X | None` admits null; a field without a default is required;
- metadata `minimum`, `maximum`, `exclusive_minimum`, `exclusive_maximum`, `min_length`,
  `max_length`, `pattern`, `min_items`, `max_items` become the JSON Schema keywords
  (`minLength`, ...);
- metadata `omit_if_none` (left out of the JSON when None) makes the field never null;
- `list`/`tuple`/`Sequence` are arrays, `dict[str, X]`/`Mapping` objects, a nested attrs class a
  `$ref` into `components/schemas` (added there once, under its class name).
"""

from __future__ import annotations

import collections.abc
import types
import typing
from typing import Any

import attrs

__all__ = ["Components", "query_parameters", "schema_of"]

#: Field metadata keys and the JSON Schema keywords they become.
KEYWORDS = {
    "minimum": "minimum",
    "maximum": "maximum",
    "exclusive_minimum": "exclusiveMinimum",
    "exclusive_maximum": "exclusiveMaximum",
    "min_length": "minLength",
    "max_length": "maxLength",
    "pattern": "pattern",
    "min_items": "minItems",
    "max_items": "maxItems",
}
_SCALARS: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
    Any: {},
    object: {},
}
_ARRAYS = (list, tuple, set, frozenset, collections.abc.Sequence, collections.abc.Set)
_OBJECTS = (dict, collections.abc.Mapping)

Components = dict[str, dict[str, Any]]


def schema_of(tp: Any, components: Components) -> dict[str, Any]:
    """The schema of the type `tp`; attrs classes it reaches are added to `components`."""
    if tp in _SCALARS:
        return dict(_SCALARS[tp])
    if attrs.has(tp):
        _component(tp, components)
        return {"$ref": f"#/components/schemas/{tp.__name__}"}
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        kinds = sorted({_json_type(a) for a in args})
        return {"type": kinds[0] if len(kinds) == 1 else kinds, "enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        return _union([schema_of(a, components) for a in args])
    if origin in _ARRAYS or tp in _ARRAYS:
        if origin is tuple and args and args[-1] is not Ellipsis:
            return {"type": "array", "prefixItems": [schema_of(a, components) for a in args],
                    "minItems": len(args), "maxItems": len(args)}
        return {"type": "array", "items": schema_of(args[0], components) if args else {}}
    if origin in _OBJECTS or tp in _OBJECTS:
        values = schema_of(args[1], components) if len(args) == 2 else {}
        return {"type": "object", "additionalProperties": values}
    raise TypeError(f"no JSON Schema for {tp!r}")


def _union(options: list[dict[str, Any]]) -> dict[str, Any]:
    """`X | None` as `type: [X, "null"]` (null joins an enum too) when X names its type,
    plain types as one `type` list, anything else as `anyOf`."""
    plain = [o for o in options if set(o) == {"type"} and isinstance(o["type"], str)]
    if len(plain) == len(options):
        return {"type": [o["type"] for o in options]}
    others = [o for o in options if o != {"type": "null"}]
    if len(others) == 1 and len(options) == 2 and isinstance(others[0].get("type"), str):
        nullable = {**others[0], "type": [others[0]["type"], "null"]}
        if "enum" in nullable:
            nullable["enum"] = [*nullable["enum"], None]
        return nullable
    return {"anyOf": options}


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if value is None:
        return "null"
    return "number" if isinstance(value, float) else "string"


def _component(cls: type, components: Components) -> None:
    name = cls.__name__
    if name in components:
        return
    components[name] = {}  # placeholder: a class that refers to itself stops here
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in attrs.fields(cls):
        key = field.name
        schema = schema_of(hints.get(field.name, field.type), components)
        metadata = field.metadata
        if metadata.get("omit_if_none"):  # left out when None: never null
            schema = _not_null(schema)
        extra = {KEYWORDS[k]: v for k, v in metadata.items() if k in KEYWORDS}
        if "doc" in metadata:
            extra["description"] = metadata["doc"]
        if extra:
            schema = {**schema, **extra} if "$ref" not in schema else {"allOf": [schema], **extra}
        properties[key] = schema
        if field.default is attrs.NOTHING:
            required.append(key)
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if cls.__doc__:  # the class's own (a class inherits no __doc__)
        schema = {"description": " ".join(cls.__doc__.split()), **schema}
    components[name] = schema


def query_parameters(model: type) -> list[dict[str, Any]]:
    """A query model's fields as OpenAPI query parameters (a query string has no null)."""
    components: Components = {}
    schema_of(model, components)
    found = components[model.__name__]
    params = []
    for name, schema in found["properties"].items():
        schema = _not_null(schema)
        description = schema.pop("description", "")
        params.append({"name": name, "in": "query", "required": name in found.get("required", ()),
                       "description": description, "schema": schema})
    return params


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` without null (for a value that is absent rather than null)."""
    schema = dict(schema)
    kinds = schema.get("type")
    if isinstance(kinds, list):
        kept = [k for k in kinds if k != "null"]
        schema["type"] = kept[0] if len(kept) == 1 else kept
    if "enum" in schema:
        schema["enum"] = [v for v in schema["enum"] if v is not None]
    if "anyOf" in schema:
        kept_options = [o for o in schema["anyOf"] if o != {"type": "null"}]
        schema.pop("anyOf")
        schema = {**kept_options[0], **schema} if len(kept_options) == 1 else {
            **schema, "anyOf": kept_options}
    return schema
