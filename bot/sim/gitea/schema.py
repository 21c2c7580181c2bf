"""A JSON-schema subset validator: the part of JSON Schema that Gitea's swagger uses.

The fake Gitea checks request bodies and its own responses with it; it knows nothing of
HTTP or of the fake's state, so the spec-facts tests can use it on any JSON value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Gitea's real User JSON carries `username` (User.MarshalJSON) though the spec does not list it.
SPEC_EXTRA_KEYS: Mapping[str, frozenset[str]] = {"User": frozenset({"username"})}
# Keys Gitea leaves out (omitempty) in the objects the fake builds; any other key the spec
# declares must be present, so a half-built response cannot pass as "spec-shaped".
SPEC_OMITEMPTY: Mapping[str, frozenset[str]] = {
    "Repository": frozenset(
        {"parent", "default_target_branch", "external_tracker", "external_wiki", "repo_transfer"}
    ),
    "PullRequest": frozenset({"review_comments"}),
    "ChangedFile": frozenset({"previous_filename"}),
}

# Shared with the parameter checks (spec.py) and the fake's own integer parsing.
DATE_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
INT_RE = re.compile(r"^[+-]?\d+$")
INT_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


class SchemaChecker:
    """Checks JSON values against the part of JSON Schema that Gitea's swagger uses.

    Stricter than JSON Schema in one way on purpose: an object schema with `properties` and
    no `additionalProperties` is closed, so a misspelt key is reported instead of ignored.
    """

    def __init__(
        self,
        definitions: Mapping[str, Any],
        *,
        extra_keys: Mapping[str, frozenset[str]] = SPEC_EXTRA_KEYS,
        omitempty: Mapping[str, frozenset[str]] = SPEC_OMITEMPTY,
    ) -> None:
        self._defs = definitions
        self._extra = extra_keys
        self._omitempty = omitempty

    def check(
        self,
        value: object,
        schema: Mapping[str, Any],
        *,
        where: str = "$",
        response: bool = False,
        complete: bool = False,
    ) -> list[str]:
        """Every way `value` breaks `schema`, as "path: problem" strings (empty: it conforms).

        `response`: Gitea's Go structs serialise nil pointers, slices and maps as null, which
        Swagger 2.0 cannot express, so null is accepted anywhere in a response and nowhere in a
        request. `complete`: every declared property of a definition must be present, except
        the known omitempty ones.
        """
        out: list[str] = []
        self._check(value, schema, where, None, response, complete, out)
        return out

    def _check(
        self,
        value: object,
        schema: Mapping[str, Any],
        where: str,
        defn: str | None,
        response: bool,
        complete: bool,
        out: list[str],
    ) -> None:
        ref = schema.get("$ref")
        if isinstance(ref, str):
            name = ref.removeprefix("#/definitions/")
            target = self._defs.get(name) if ref.startswith("#/definitions/") else None
            if not isinstance(target, Mapping):
                out.append(f"{where}: unresolvable $ref {ref}")
                return
            self._check(value, target, where, name, response, complete, out)
            return
        typ = schema.get("type")
        if value is None:
            if not response and typ is not None:
                out.append(f"{where}: null is not allowed (expected {typ})")
            return
        enum = schema.get("enum")
        if isinstance(enum, list) and value not in enum:
            out.append(f"{where}: {value!r} is not one of {enum}")
        if typ == "object" or (typ is None and "properties" in schema):
            self._object(value, schema, where, defn, response, complete, out)
        elif typ == "array":
            if not isinstance(value, list):
                out.append(f"{where}: expected array, got {_type_name(value)}")
                return
            items = schema.get("items")
            if isinstance(items, Mapping):
                for i, item in enumerate(value):
                    self._check(item, items, f"{where}[{i}]", None, response, complete, out)
        else:
            self._scalar(value, schema, typ, where, out)

    @staticmethod
    def _scalar(
        value: object, schema: Mapping[str, Any], typ: object, where: str, out: list[str]
    ) -> None:
        if typ == "string":
            if not isinstance(value, str):
                out.append(f"{where}: expected string, got {_type_name(value)}")
                return
            fmt = schema.get("format")
            if fmt == "date-time" and not DATE_TIME_RE.match(value):
                out.append(f"{where}: {value!r} is not an RFC 3339 date-time")
            elif fmt == "date" and not DATE_RE.match(value):
                out.append(f"{where}: {value!r} is not a date (YYYY-MM-DD)")
        elif typ == "integer":
            # JSON true is not a number to Go, and 1.0 does not decode into an int64
            if isinstance(value, bool) or not isinstance(value, int):
                out.append(f"{where}: expected integer, got {_type_name(value)}")
                return
            lo, hi = INT_RANGES.get(str(schema.get("format")), (-(2**63), 2**64 - 1))
            if not lo <= value <= hi:
                out.append(f"{where}: {value} is out of range for {schema.get('format')}")
        elif typ == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                out.append(f"{where}: expected number, got {_type_name(value)}")
        elif typ == "boolean" and not isinstance(value, bool):
            out.append(f"{where}: expected boolean, got {_type_name(value)}")
        # no type (or "file"): anything goes, as in the spec

    def _object(
        self,
        value: object,
        schema: Mapping[str, Any],
        where: str,
        defn: str | None,
        response: bool,
        complete: bool,
        out: list[str],
    ) -> None:
        if not isinstance(value, dict):
            out.append(f"{where}: expected object, got {_type_name(value)}")
            return
        props: Mapping[str, Any] = schema.get("properties") or {}
        for key in schema.get("required") or ():
            if key not in value:
                out.append(f"{where}: missing required property {key!r}")
        extra = schema.get("additionalProperties")
        allowed_extra = self._extra.get(defn, frozenset()) if defn else frozenset()
        for key, item in value.items():
            sub = f"{where}.{key}"
            if key in props:
                self._check(item, props[key], sub, None, response, complete, out)
            elif isinstance(extra, Mapping):
                self._check(item, extra, sub, None, response, complete, out)
            elif extra is True or (not props and extra is None) or key in allowed_extra:
                continue
            else:
                out.append(f"{where}: unknown property {key!r}")
        if complete and defn is not None:
            skip = self._omitempty.get(defn, frozenset())
            missing = [k for k in props if k not in value and k not in skip]
            if missing:
                out.append(f"{where}: {defn} lacks {', '.join(missing)}")
