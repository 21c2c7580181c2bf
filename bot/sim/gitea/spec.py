"""Gitea's API spec, indexed: which operation a request hits, and what is wrong with it.

The fake Gitea loads the committed facts of the official spec (SPEC_FACTS, cut by
scripts/gitea-spec-facts) or a full swagger file, and checks every request's path, query and
body, and every response it builds itself, against the operation's declaration.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from multidict import MultiMapping

from bot.sim.gitea.paths import PathTemplate, best_match
from bot.sim.gitea.schema import DATE_RE, DATE_TIME_RE, INT_RANGES, INT_RE, SchemaChecker

API_PREFIX = "/api/v1"
GITEA_VERSION = "1.26.3"
# The facts of Gitea's API the fake checks against, cut from the official 1.26.3 spec by
# scripts/gitea-spec-facts and shipped with the package, so a plain clone can run every check.
# They live in bot/sim/data, beside this package, where pyproject's package-data finds them.
SPEC_FACTS = Path(__file__).parent.parent / "data" / f"gitea-{GITEA_VERSION}-facts.json"
# Marks an operation the facts list by name only (the fake does not answer it): its details
# were left out of the facts, so its requests are not checked; the fake answers them 501.
OMITTED = "x-redfix-omitted"

# strconv.ParseBool, which Gitea's query parsing uses
_BOOLS = frozenset(
    {"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"}
)


class SpecRoute(NamedTuple):
    template: str
    params: dict[str, str]
    operation: Mapping[str, Any] | None  # None: the path exists, but not with this method


class GiteaSpec:
    """The swagger document, indexed for matching requests and checking them and responses."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.doc = doc
        self.version = str(doc.get("info", {}).get("version", ""))
        # where the facts came from (spec version, Gitea commit, spec sha256); {} for a full spec
        self.provenance: Mapping[str, Any] = doc.get("provenance", {})
        self.base_path = str(doc.get("basePath", API_PREFIX)).rstrip("/")
        self.checker = SchemaChecker(doc.get("definitions", {}))
        self._paths: Mapping[str, Mapping[str, Any]] = doc.get("paths", {})
        self._templates = [PathTemplate(p) for p in self._paths]

    @classmethod
    def load(cls, path: Path) -> GiteaSpec:
        """Read a swagger file once per process (it is large and never changes under us)."""
        return _load_spec(path.resolve())

    def operations(self) -> list[tuple[str, str]]:
        """Every (METHOD, template) the spec declares."""
        return [(m.upper(), p) for p, ops in self._paths.items() for m in ops if m != "parameters"]

    def checked_operations(self) -> list[tuple[str, str]]:
        """The (METHOD, template) pairs whose parameters and responses the spec details (all of
        them in a full spec; in the facts file, the ones the fake answers)."""
        return [
            (m, p)
            for m, p in self.operations()
            if not self._paths[p][m.lower()].get(OMITTED, False)
        ]

    def find(self, method: str, raw_path: str) -> SpecRoute | None:
        """The operation a request under basePath hits, or None if no path template matches."""
        best = best_match(self._templates, raw_path)
        if best is None:
            return None
        tmpl, params = best
        op = self._paths[tmpl.template].get(method.lower())
        return SpecRoute(tmpl.template, params, op if isinstance(op, Mapping) else None)

    def check_request(
        self,
        route: SpecRoute,
        query: MultiMapping[str],
        body: object,
        has_body: bool,
    ) -> list[str]:
        """Problems with a request's path, query parameters and JSON body."""
        op = route.operation or {}
        if op.get(OMITTED):
            return []  # not in the facts: the fake answers it "not implemented" (a violation)
        declared = [p for p in op.get("parameters", ()) if isinstance(p, Mapping)]
        out = self._check_path(route, declared)
        out += self._check_query(query, declared)
        return out + self._check_body(body, has_body, declared)

    def _check_path(self, route: SpecRoute, declared: list[Mapping[str, Any]]) -> list[str]:
        out: list[str] = []
        for prm in declared:
            if prm.get("in") == "path":
                value = route.params.get(str(prm.get("name")))
                if value is None:
                    out.append(f"path parameter {prm.get('name')!r} missing")
                else:
                    out += self._scalar(value, prm, f"path parameter {prm.get('name')!r}")
        return out

    def _check_query(
        self, query: MultiMapping[str], declared: list[Mapping[str, Any]]
    ) -> list[str]:
        out: list[str] = []
        by_name = {str(p.get("name")): p for p in declared if p.get("in") == "query"}
        for key in sorted(set(query.keys())):
            values = query.getall(key)
            qprm = by_name.get(key)
            if qprm is None:
                if key in ("token", "access_token"):
                    out.append(
                        f"query parameter {key!r}: credentials in the URL (deprecated; "
                        "they end up in access logs), send Authorization: token instead"
                    )
                else:
                    out.append(f"query parameter {key!r} is not declared for this endpoint")
                continue
            if qprm.get("type") == "array":
                items = qprm.get("items")
                for v in values:
                    out += self._scalar(
                        v, items if isinstance(items, Mapping) else {}, f"query parameter {key!r}"
                    )
            elif len(values) > 1:
                out.append(f"query parameter {key!r} given {len(values)} times")
            else:
                out += self._scalar(values[0], qprm, f"query parameter {key!r}")
        for name, prm in by_name.items():
            if prm.get("required") and name not in query:
                out.append(f"required query parameter {name!r} missing")
        return out

    def _check_body(
        self, body: object, has_body: bool, declared: list[Mapping[str, Any]]
    ) -> list[str]:
        body_prm = next((p for p in declared if p.get("in") == "body"), None)
        if body_prm is None:
            if has_body and not any(p.get("in") == "formData" for p in declared):
                return ["this endpoint takes no request body"]
            return []
        schema = body_prm.get("schema") or {}
        if not has_body:
            resolved = self._resolve(schema)
            if body_prm.get("required") or resolved.get("required"):
                return ["request body missing"]
            return []
        return self.checker.check(body, schema, where="body")

    def check_response(
        self,
        route: SpecRoute,
        method: str,
        status: int,
        body: object,
        has_body: bool,
        *,
        complete: bool = True,
    ) -> list[str]:
        """Problems with a response the fake built, judged by the operation's declared ones."""
        op = route.operation or {}
        responses: Mapping[str, Any] = op.get("responses", {})
        what = f"{method} {route.template} -> {status}"
        declared = responses.get(str(status))
        if declared is None:
            # the spec lists error codes loosely (401, 422 and 500 almost never), success
            # codes precisely
            return [f"{what}: status not declared in the spec"] if 200 <= status < 300 else []
        resp = self._resolve_response(declared)
        schema = resp.get("schema")
        if not isinstance(schema, Mapping):
            if has_body and 200 <= status < 300:
                return [f"{what}: the spec declares no body, the fake sent one"]
            return []
        if not has_body:
            return [f"{what}: the spec declares a body, the fake sent none"]
        return [
            f"{what}: {p}"
            for p in self.checker.check(body, schema, where="$", response=True, complete=complete)
        ]

    def response_schema(self, method: str, template: str, status: int) -> Mapping[str, Any]:
        """The schema declared for one response (for tests that check bodies themselves)."""
        op = self._paths[template][method.lower()]
        resp = self._resolve_response(op["responses"][str(status)])
        schema = resp.get("schema")
        if not isinstance(schema, Mapping):
            raise KeyError(f"{method} {template} -> {status} declares no body")
        return schema

    def _resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/definitions/"):
            target = self.doc.get("definitions", {}).get(ref.removeprefix("#/definitions/"))
            if isinstance(target, Mapping):
                return target
        return schema

    def _resolve_response(self, declared: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = declared.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/responses/"):
            target = self.doc.get("responses", {}).get(ref.removeprefix("#/responses/"))
            if isinstance(target, Mapping):
                return target
        return declared

    @staticmethod
    def _scalar(value: str, prm: Mapping[str, Any], what: str) -> list[str]:
        typ = prm.get("type")
        out: list[str] = []
        if typ == "integer":
            if not INT_RE.match(value):
                return [f"{what}: {value!r} is not an integer"]
            lo, hi = INT_RANGES.get(str(prm.get("format")), INT_RANGES["int64"])
            if not lo <= int(value) <= hi:
                out.append(f"{what}: {value} is out of range")
        elif typ == "boolean":
            if value not in _BOOLS:
                out.append(f"{what}: {value!r} is not a boolean")
        elif typ == "string":
            fmt = prm.get("format")
            if fmt == "date-time" and not DATE_TIME_RE.match(value):
                out.append(f"{what}: {value!r} is not an RFC 3339 date-time")
            elif fmt == "date" and not DATE_RE.match(value):
                out.append(f"{what}: {value!r} is not a date (YYYY-MM-DD)")
        enum = prm.get("enum")
        if isinstance(enum, list) and value not in [str(e) for e in enum]:
            out.append(f"{what}: {value!r} is not one of {enum}")
        return out


@functools.lru_cache(maxsize=4)
def _load_spec(path: Path) -> GiteaSpec:
    with path.open(encoding="utf-8") as f:
        doc = json.load(f)
    if not isinstance(doc, dict) or not isinstance(doc.get("paths"), dict):
        raise ValueError(f"{path}: not a swagger document nor a facts file (no 'paths')")
    return GiteaSpec(doc)
