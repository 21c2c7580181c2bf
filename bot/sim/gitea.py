"""A fake Gitea 1.26.3 API server (aiohttp) that checks every request against the official spec."""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, NamedTuple, Self
from urllib.parse import unquote

from aiohttp import web
from multidict import MultiMapping

Json = dict[str, Any]

API_PREFIX = "/api/v1"
SIM_TOKEN = "redfix-sim-token"  # noqa: S105 - the fake server's own made-up credential
GITEA_VERSION = "1.26.3"
_JSON_CT = "application/json;charset=utf-8"  # exactly what Gitea sends
_ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time, as Gitea serialises it
# Gitea's default [ui] REACTIONS
_ALLOWED_REACTIONS = frozenset(
    {"+1", "-1", "laugh", "hooray", "confused", "heart", "rocket", "eyes"}
)
_STATUS_STATES = ("pending", "success", "error", "failure", "warning", "skipped")
_PERMS = ("none", "read", "write", "admin", "owner")
_PAGE_DEFAULT, _PAGE_MAX = 30, 50
# The facts of Gitea's API the fake checks against, cut from the official 1.26.3 spec by
# scripts/gitea-spec-facts and shipped with the package, so a plain clone can run every check.
SPEC_FACTS = Path(__file__).parent / "data" / f"gitea-{GITEA_VERSION}-facts.json"
# Marks an operation the facts list by name only (the fake does not answer it): its details
# were left out of the facts, so its requests are not checked; the fake answers them 501.
OMITTED = "x-redfix-omitted"
# The methods that change something: `fail_next(..., methods=WRITE_METHODS)` breaks only those.
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")

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

_DATE_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INT_RE = re.compile(r"^[+-]?\d+$")
_INT_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}
# strconv.ParseBool, which Gitea's query parsing uses
_BOOLS = frozenset(
    {"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"}
)


# --- a JSON-schema subset validator --------------------------------------------------------


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
        elif typ == "string":
            if not isinstance(value, str):
                out.append(f"{where}: expected string, got {_type_name(value)}")
                return
            fmt = schema.get("format")
            if fmt == "date-time" and not _DATE_TIME_RE.match(value):
                out.append(f"{where}: {value!r} is not an RFC 3339 date-time")
            elif fmt == "date" and not _DATE_RE.match(value):
                out.append(f"{where}: {value!r} is not a date (YYYY-MM-DD)")
        elif typ == "integer":
            # JSON true is not a number to Go, and 1.0 does not decode into an int64
            if isinstance(value, bool) or not isinstance(value, int):
                out.append(f"{where}: expected integer, got {_type_name(value)}")
                return
            lo, hi = _INT_RANGES.get(str(schema.get("format")), (-(2**63), 2**64 - 1))
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


# --- the spec: routes, parameters, bodies --------------------------------------------------


class _Template:
    """One swagger path template, matched segment by segment like Gitea's router."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.names: list[str] = []
        parts: list[str] = []
        rank: list[int] = []
        for seg in template.strip("/").split("/"):
            pieces = re.split(r"(\{[^}]+\})", seg)
            regex = ""
            for piece in pieces:
                if piece.startswith("{") and piece.endswith("}"):
                    name = piece[1:-1]
                    self.names.append(name)
                    # {filepath} is the one parameter that spans directories
                    regex += "(.+)" if name == "filepath" else "([^/]+?)"
                else:
                    regex += re.escape(piece)
            params = sum(1 for p in pieces if p.startswith("{"))
            literal = any(p and not p.startswith("{") for p in pieces)
            # a fixed segment beats a mixed one ("{index}.{diffType}") beats a bare parameter,
            # so ".../issues/comments" is never read as issue number "comments"
            rank.append(0 if not params else 1 if literal else 2)
            parts.append(regex)
        self.rank = tuple(rank)
        self._re = re.compile("^/" + "/".join(parts) + "$")

    def match(self, raw_path: str) -> dict[str, str] | None:
        m = self._re.match(raw_path)
        if m is None:
            return None
        return {n: unquote(v) for n, v in zip(self.names, m.groups(), strict=True)}


def _best(templates: Sequence[_Template], raw_path: str) -> tuple[_Template, dict[str, str]] | None:
    found = [(t, p) for t in templates if (p := t.match(raw_path)) is not None]
    if not found:
        return None
    return min(found, key=lambda tp: tp[0].rank)


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
        self._templates = [_Template(p) for p in self._paths]

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
        best = _best(self._templates, raw_path)
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
        out: list[str] = []
        for prm in declared:
            if prm.get("in") == "path":
                value = route.params.get(str(prm.get("name")))
                if value is None:
                    out.append(f"path parameter {prm.get('name')!r} missing")
                else:
                    out += self._scalar(value, prm, f"path parameter {prm.get('name')!r}")
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
        body_prm = next((p for p in declared if p.get("in") == "body"), None)
        if body_prm is None:
            if has_body and not any(p.get("in") == "formData" for p in declared):
                out.append("this endpoint takes no request body")
            return out
        schema = body_prm.get("schema") or {}
        if not has_body:
            resolved = self._resolve(schema)
            if body_prm.get("required") or resolved.get("required"):
                out.append("request body missing")
            return out
        return out + self.checker.check(body, schema, where="body")

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
            if not _INT_RE.match(value):
                return [f"{what}: {value!r} is not an integer"]
            lo, hi = _INT_RANGES.get(str(prm.get("format")), _INT_RANGES["int64"])
            if not lo <= int(value) <= hi:
                out.append(f"{what}: {value} is out of range")
        elif typ == "boolean":
            if value not in _BOOLS:
                out.append(f"{what}: {value!r} is not a boolean")
        elif typ == "string":
            fmt = prm.get("format")
            if fmt == "date-time" and not _DATE_TIME_RE.match(value):
                out.append(f"{what}: {value!r} is not an RFC 3339 date-time")
            elif fmt == "date" and not _DATE_RE.match(value):
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


# --- what the fake holds -------------------------------------------------------------------


class SimRequest(NamedTuple):
    """One request as the fake received it: `body` is the decoded JSON, None if there was no
    body, or the raw text if it was not JSON."""

    method: str
    path: str
    body: Any


class SimWrite(NamedTuple):
    """One change the fake applied, in the order it applied them (`GiteaSim.writes`).

    `kind`: "comment" (created), "edit" (a comment's body replaced), "reaction" (added),
    "unreaction" (removed) or "status" (set). `comment_id`: the comment created, edited or
    reacted to; `sha`: the commit a status was set on. `value`: the comment's body, the
    reaction's content or the status's state; `note`: the status's description. `at`: when,
    by time.monotonic(). A request that changed nothing (an error, an injected fault, a
    reaction that was already there) is not a write.
    """

    kind: str
    repo: str
    user: str
    comment_id: int = 0
    sha: str = ""
    value: str = ""
    note: str = ""
    at: float = 0.0


@dataclass(frozen=True)
class SimFile:
    """A changed file to seed on a PR."""

    filename: str
    status: str = "changed"  # Gitea's word, not GitHub's "modified"
    additions: int = 1
    deletions: int = 0
    previous_filename: str = ""


@dataclass(frozen=True)
class SimComment:
    id: int
    repo: str
    index: int
    body: str
    user: str
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class SimReaction:
    user: str
    content: str
    created_at: str


@dataclass(frozen=True)
class SimStatus:
    id: int  # per (repo, sha), as Gitea numbers them
    state: str
    context: str
    description: str
    target_url: str
    creator: str
    created_at: str


@dataclass
class _User:
    id: int
    login: str
    created: str
    is_admin: bool = False
    is_org: bool = False


@dataclass
class _Repo:
    id: int
    owner: str
    name: str
    private: bool
    default_branch: str
    fork_of: str | None
    created: str

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass
class _Pull:
    id: int
    head_sha: str
    head_ref: str
    base_ref: str
    base_sha: str
    head_repo: str
    files: list[SimFile]


@dataclass
class _Issue:
    # issues and PRs share one index space per repo, as in Gitea
    id: int
    repo: str
    number: int
    title: str
    body: str
    user: str
    state: str
    created: str
    updated: str
    pull: _Pull | None = None


@dataclass
class _Answer:
    status: int
    body: Any = None  # None: no body at all
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # an exact body that is not JSON (Gitea's empty 403s)


class _Reject(Exception):
    """Raised by a handler to answer with an error right away."""

    def __init__(self, answer: _Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


@dataclass
class _Ctx:
    caller: str
    what: str  # "METHOD /api/v1/...", to prefix violations
    path: str  # raw, under the API prefix
    params: dict[str, str]
    query: MultiMapping[str]
    body: Any


_Handler = Callable[["GiteaSim", _Ctx], _Answer]


def _now() -> str:
    # Gitea: RFC 3339, whole seconds, Z when the server runs in UTC
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _method_set(methods: Iterable[str] | None) -> frozenset[str] | None:
    if methods is None:
        return None
    if isinstance(methods, str):  # a lone "POST" would otherwise become {"P", "O", "S", "T"}
        methods = (methods,)
    return frozenset(m.upper() for m in methods)


def _parse_time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    # a time without an offset cannot be compared with Gitea's; the spec check reports it
    return parsed if parsed.tzinfo is not None else None


# PR merges, approvals and closing are the one thing the bot must never do; these are caught
# before anything else (even without a spec), so a test fails however the attempt is made.
_MERGE_RE = re.compile(r"^/repos/[^/]+/[^/]+/(pulls/[^/]+/merge|merge-upstream)$")
_REVIEW_RE = re.compile(r"^/repos/[^/]+/[^/]+/pulls/[^/]+/reviews(/[^/]+)?$")
_EDIT_ISSUE_RE = re.compile(r"^/repos/[^/]+/[^/]+/(pulls|issues)/[^/]+$")


def _forbidden_action(method: str, raw_path: str, body: object) -> str | None:
    if _MERGE_RE.match(raw_path):
        return "merge"
    fields = body if isinstance(body, dict) else {}
    if method == "POST" and _REVIEW_RE.match(raw_path):
        event = fields.get("event")
        if isinstance(event, str) and event.strip().upper() in ("APPROVE", "APPROVED"):
            return "approve"
    if method == "PATCH" and _EDIT_ISSUE_RE.match(raw_path):
        state = fields.get("state")
        if isinstance(state, str) and state.strip().lower() == "closed":
            return "close"
    return None


class GiteaSim:
    """A small, strict stand-in for a Gitea server, for tests and the built-in demo.

    Seed it (`add_repo`, `add_pull`, ...), point a client at `url + "/api/v1"`, then inspect
    what the client did (`comments`, `statuses`, `requests`, and `writes`: every change, in
    the order applied) and what it did wrong (`violations`). With `spec_path` (SPEC_FACTS, the
    committed facts of Gitea 1.26.3's spec, or a full swagger file), every request is checked
    against the spec, and so is every response the fake itself builds.
    `fail_next`/`fail_until` inject errors (`faults` lists the requests they answered).
    """

    _routes: ClassVar[dict[tuple[str, str], _Handler]] = {}
    # Every merge/approve/close attempt by redfix's own client (its User-Agent) seen by any
    # instance in this process: the test suite checks it stays empty across the session.
    forbidden_seen: ClassVar[list[str]] = []

    def __init__(
        self,
        *,
        spec_path: Path | None = None,
        root_url: str = "",
        token: str = SIM_TOKEN,
        bot_login: str = "redfix-bot",
        check_responses: bool = True,
    ) -> None:
        """`root_url` is Gitea's ROOT_URL, used in html_url links; "" means the fake's own URL."""
        self.spec = GiteaSpec.load(spec_path) if spec_path is not None else None
        self._root_url = root_url.rstrip("/")
        self.bot_login = bot_login
        self.check_responses = check_responses
        self.requests: list[SimRequest] = []
        self.writes: list[SimWrite] = []  # every change applied, in order
        self.faults: list[SimRequest] = []  # every request answered with an injected fault
        self.violations: list[str] = []
        self._tokens: dict[str, str] = {token: bot_login}
        # Distinct ranges for distinct id kinds, so that mixing up an issue index, an issue id
        # and a comment id fails loudly instead of happening to work.
        self._user_ids = itertools.count(1)
        self._repo_ids = itertools.count(11)
        self._issue_ids = itertools.count(501)
        self._pull_ids = itertools.count(301)
        self._comment_ids = itertools.count(1001)
        self._users: dict[str, _User] = {}
        self._repos: dict[str, _Repo] = {}
        self._issues: dict[tuple[str, int], _Issue] = {}
        self._comments: dict[int, SimComment] = {}
        self._reactions: dict[int, list[SimReaction]] = {}
        self._statuses: dict[tuple[str, str], list[SimStatus]] = {}
        self._members: dict[str, dict[str, bool]] = {}  # org -> member -> public
        self._perms: dict[tuple[str, str], str] = {}
        self._fail_count = 0
        self._fail_count_status = 500
        self._fail_count_methods: frozenset[str] | None = None  # None: every method
        self._fail_deadline = 0.0
        self._fail_deadline_status = 500
        self._fail_deadline_methods: frozenset[str] | None = None
        self._runner: web.AppRunner | None = None
        self._url = ""
        self.add_user(bot_login)

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on host:port (0: any free port); `url` is valid afterwards."""
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in str(bound_host) else str(bound_host)
        self._url = f"http://{shown}:{bound_port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """The root URL the fake listens on; the API is at url + "/api/v1"."""
        if not self._url:
            raise RuntimeError("GiteaSim is not started")
        return self._url

    @property
    def api_url(self) -> str:
        return self.url + API_PREFIX

    @property
    def root_url(self) -> str:
        return self._root_url or self.url

    # --- seeding ------------------------------------------------------------------------

    def add_token(self, token: str, login: str) -> None:
        """Let another user call the API (the bot's own token is set in the constructor)."""
        self.add_user(login)
        self._tokens[token] = login

    def add_user(self, login: str, *, admin: bool = False) -> int:
        user = self._users.get(login)
        if user is None:
            user = _User(next(self._user_ids), login, _now())
            self._users[login] = user
        user.is_admin = user.is_admin or admin
        return user.id

    def add_repo(
        self,
        repo: str,
        *,
        private: bool = False,
        default_branch: str = "main",
        fork_of: str | None = None,
    ) -> int:
        """Add "owner/name" (its owner too, if new); returns the repo id."""
        owner, _, name = repo.partition("/")
        if not owner or not name or "/" in name:
            raise ValueError(f"repo must be 'owner/name': {repo!r}")
        if fork_of is not None and fork_of not in self._repos:
            raise ValueError(f"fork_of {fork_of!r} is not a known repo")
        if repo not in self._repos:
            self.add_user(owner)
            self._repos[repo] = _Repo(
                next(self._repo_ids), owner, name, private, default_branch, fork_of, _now()
            )
        return self._repos[repo].id

    def add_issue(
        self, repo: str, number: int, *, title: str = "", user: str = "alice", state: str = "open"
    ) -> None:
        self._new_issue(repo, number, title or f"Issue {number}", user, state)

    def add_pull(
        self,
        repo: str,
        number: int,
        head_sha: str,
        *,
        head_ref: str = "feature",
        base_ref: str = "main",
        head_repo: str | None = None,
        state: str = "open",
        title: str = "",
        user: str = "alice",
        files: Sequence[SimFile] = (),
    ) -> None:
        """Add PR `number`; `head_repo` names a fork (added if new) for a cross-repo PR."""
        if head_repo is not None and head_repo != repo:
            self.add_repo(repo)
            self.add_repo(head_repo, fork_of=repo)
        issue = self._new_issue(repo, number, title or f"PR {number}", user, state)
        base_sha = hashlib.sha1(f"{repo}@{base_ref}".encode(), usedforsecurity=False).hexdigest()
        issue.pull = _Pull(
            next(self._pull_ids),
            head_sha,
            head_ref,
            base_ref,
            base_sha,
            head_repo or repo,
            list(files),
        )

    def set_pull_head(self, repo: str, number: int, head_sha: str) -> None:
        """Move a PR's head, as a push to its branch would."""
        pull = self._issue_or_raise(repo, number).pull
        if pull is None:
            raise ValueError(f"{repo}#{number} is not a PR")
        pull.head_sha = head_sha

    def add_member(self, org: str, user: str, *, public: bool = False) -> None:
        self.add_user(org)
        self._users[org].is_org = True
        self.add_user(user)
        self._members.setdefault(org, {})[user] = public

    def set_permission(self, repo: str, user: str, perm: str) -> None:
        """Give `user` an explicit access level on `repo`: none, read, write, admin or owner."""
        if perm not in _PERMS:
            raise ValueError(f"perm must be one of {_PERMS}: {perm!r}")
        self.add_repo(repo)
        self.add_user(user)
        self._perms[(repo, user)] = perm

    def add_comment(
        self, repo: str, index: int, body: str, *, user: str = "alice", comment_id: int = 0
    ) -> int:
        """Add a comment (as if `user` posted it); returns its id. `comment_id` pins the id,
        e.g. to match a recorded webhook payload."""
        self._issue_or_raise(repo, index)
        self.add_user(user)
        if comment_id and comment_id in self._comments:
            raise ValueError(f"comment id {comment_id} is taken")
        return self._store_comment(repo, index, body, user, comment_id)

    # --- fault injection ----------------------------------------------------------------

    def fail_next(self, n: int, status: int = 500, *, methods: Iterable[str] | None = None) -> None:
        """Answer the next `n` valid, authorised requests with `status`, changing nothing.
        `methods` (e.g. WRITE_METHODS): only requests with these methods fail (and count)."""
        self._fail_count, self._fail_count_status = n, status
        self._fail_count_methods = _method_set(methods)

    def fail_until(
        self, monotonic_deadline: float, status: int = 500, *, methods: Iterable[str] | None = None
    ) -> None:
        """Answer every valid, authorised request with `status` until time.monotonic() passes
        `monotonic_deadline`, changing nothing. `methods` (e.g. WRITE_METHODS): only requests
        with these methods fail; the others are answered as usual."""
        self._fail_deadline, self._fail_deadline_status = monotonic_deadline, status
        self._fail_deadline_methods = _method_set(methods)

    # --- inspection ---------------------------------------------------------------------

    def comments(self, repo: str, index: int) -> list[SimComment]:
        return [c for c in self._comments.values() if (c.repo, c.index) == (repo, index)]

    def reactions(self, comment_id: int) -> list[SimReaction]:
        return list(self._reactions.get(comment_id, ()))

    def statuses(self, repo: str, sha: str) -> list[SimStatus]:
        """Every status set on the commit, oldest first."""
        return list(self._statuses.get((repo, sha), ()))

    def violations_text(self) -> str:
        return "\n".join(f"- {v}" for v in self.violations)

    def assert_clean(self) -> None:
        """Raise AssertionError listing every violation recorded so far."""
        if self.violations:
            raise AssertionError(
                f"{len(self.violations)} Gitea API violation(s):\n{self.violations_text()}"
            )

    @classmethod
    def implemented(cls) -> list[tuple[str, str]]:
        """The (METHOD, spec path template) pairs the fake answers."""
        return sorted(cls._routes)

    # --- request pipeline ---------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        method = request.method.upper()
        body: Any = None
        body_ok = True
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body_ok = False
                body = raw.decode("utf-8", "replace")
        self.requests.append(SimRequest(method, request.path, body))
        answer = self._process(request, method, body, bool(raw), body_ok)
        if answer.raw is not None:
            return web.Response(status=answer.status, body=answer.raw, headers=answer.headers)
        if answer.body is None:
            return web.Response(status=answer.status, headers=answer.headers)
        headers = {"Content-Type": _JSON_CT, **answer.headers}
        # compact, like Go's encoder
        text = json.dumps(answer.body, separators=(",", ":"), ensure_ascii=False)
        return web.Response(status=answer.status, body=text.encode(), headers=headers)

    def _process(
        self, request: web.Request, method: str, body: Any, has_body: bool, body_ok: bool
    ) -> _Answer:
        raw_path = request.rel_url.raw_path
        what = f"{method} {request.path}"
        if not raw_path.startswith(API_PREFIX + "/"):
            return self._violate(f"{what}: no such endpoint in Gitea {GITEA_VERSION} API", 404)
        api_path = raw_path[len(API_PREFIX) :]
        action = _forbidden_action(method, api_path, body)
        if action is not None:
            self.violations.append(f"{what}: merge/approve/close attempted ({action})")
            if request.headers.get("User-Agent", "").startswith("redfix/"):
                GiteaSim.forbidden_seen.append(f"{what} ({action})")
            return self._error(405, "redfix must never merge, approve or close (GiteaSim)")

        spec, spec_route = self.spec, None
        if spec is not None:
            spec_route = spec.find(method, api_path)
            if spec_route is None:
                return self._violate(f"{what}: no such endpoint in Gitea {GITEA_VERSION} API", 404)
            if spec_route.operation is None:
                return self._violate(
                    f"{what}: no such endpoint in Gitea {GITEA_VERSION} API "
                    f"(the path exists, but not for {method})",
                    404,
                )
            template, params = spec_route.template, spec_route.params
        else:
            own = _best([_Template(t) for m, t in self._routes if m == method], api_path)
            if own is None:
                return self._violate(f"{what}: unknown endpoint (no spec loaded to tell more)", 404)
            template, params = own[0].template, own[1]

        caller = self._authenticate(request)
        if isinstance(caller, _Answer):
            return caller
        if not body_ok:
            self.violations.append(f"{what}: request body is not JSON")
            return self._error(422, "[Body]: invalid JSON")
        if spec is not None and spec_route is not None:
            problems = spec.check_request(spec_route, request.query, body, has_body)
            if problems:
                self.violations += [f"{what}: {p}" for p in problems]
                return self._error(422, "; ".join(problems))
        handler = self._routes.get((method, template))
        if handler is None:
            return self._violate(f"{what}: endpoint not implemented by the fake", 501)

        injected = self._injected_fault(method)
        if injected is not None:
            self.faults.append(SimRequest(method, request.path, body))
            return injected
        try:
            answer = handler(self, _Ctx(caller, what, api_path, params, request.query, body))
        except _Reject as r:
            answer = r.answer
        except Exception as e:
            # a bug in the fake must fail the test that hit it, not vanish into a log line
            self.violations.append(f"{what}: the fake crashed: {type(e).__name__}: {e}")
            return self._error(500, "")
        if spec is not None and spec_route is not None and self.check_responses:
            self.violations += [
                f"fake response: {p}"
                for p in spec.check_response(
                    spec_route,
                    method,
                    answer.status,
                    answer.body,
                    answer.body is not None or bool(answer.raw),
                )
            ]
        return answer

    def _authenticate(self, request: web.Request) -> str | _Answer:
        header = request.headers.get("Authorization", "")
        if not header:
            return self._error(401, "token is required")
        scheme, _, token = header.partition(" ")
        login = self._tokens.get(token.strip()) if scheme.lower() == "token" else None
        if login is None:
            return self._error(401, "invalid username, password or token")
        return login

    def _injected_fault(self, method: str) -> _Answer | None:
        status = None
        count_methods, deadline_methods = self._fail_count_methods, self._fail_deadline_methods
        if self._fail_count > 0 and (count_methods is None or method in count_methods):
            self._fail_count -= 1
            status = self._fail_count_status
        elif time.monotonic() < self._fail_deadline and (
            deadline_methods is None or method in deadline_methods
        ):
            status = self._fail_deadline_status
        if status is None:
            return None
        # production Gitea hides 500 details from non-admins
        return self._error(status, "" if status == 500 else f"GiteaSim: injected HTTP {status}")

    def _violate(self, violation: str, status: int) -> _Answer:
        self.violations.append(violation)
        if status == 404:
            return self._not_found()
        return self._error(status, violation)

    def _error(self, status: int, message: str) -> _Answer:
        return _Answer(status, {"message": message, "url": f"{self.root_url}/api/swagger"})

    def _not_found(self) -> _Answer:
        return _Answer(
            404, {"errors": None, "message": "not found", "url": f"{self.root_url}/api/swagger"}
        )

    # --- state helpers ------------------------------------------------------------------

    def _new_issue(self, repo: str, number: int, title: str, user: str, state: str) -> _Issue:
        self.add_repo(repo)
        self.add_user(user)
        if (repo, number) in self._issues:
            raise ValueError(f"{repo}#{number} already exists")
        now = _now()
        issue = _Issue(next(self._issue_ids), repo, number, title, "", user, state, now, now)
        self._issues[(repo, number)] = issue
        return issue

    def _issue_or_raise(self, repo: str, number: int) -> _Issue:
        issue = self._issues.get((repo, number))
        if issue is None:
            raise ValueError(f"no issue or PR {repo}#{number}; add it first")
        return issue

    def _wrote(
        self,
        kind: str,
        repo: str,
        user: str,
        *,
        comment_id: int = 0,
        sha: str = "",
        value: str = "",
        note: str = "",
    ) -> None:
        self.writes.append(
            SimWrite(kind, repo, user, comment_id, sha, value, note, time.monotonic())
        )

    def _store_comment(
        self, repo: str, index: int, body: str, user: str, comment_id: int = 0
    ) -> int:
        now = _now()
        cid = comment_id or next(self._comment_ids)
        self._comments[cid] = SimComment(cid, repo, index, body, user, now, now)
        return cid

    def _perm(self, repo: _Repo, login: str) -> str:
        user = self._users.get(login)
        if user is not None and user.is_admin:
            return "admin"
        if login == repo.owner:
            return "owner"
        explicit = self._perms.get((repo.full_name, login))
        if explicit is not None:
            return explicit
        return "none" if repo.private else "read"

    def _repo_for(self, ctx: _Ctx) -> _Repo:
        repo = self._repos.get(f"{ctx.params['owner']}/{ctx.params['repo']}")
        # private repos are invisible (404, not 403) to those who cannot read them
        if repo is None or self._perm(repo, ctx.caller) == "none":
            raise _Reject(self._not_found())
        return repo

    def _int(self, ctx: _Ctx, value: str, what: str) -> int:
        # with a spec loaded this was checked already; without one, say what was wrong
        if not _INT_RE.match(value):
            self.violations.append(f"{ctx.what}: {what} {value!r} is not an integer")
            raise _Reject(self._error(422, f"[{what}]: not an integer"))
        return int(value)

    def _issue_for(self, ctx: _Ctx, repo: _Repo) -> _Issue:
        issue = self._issues.get((repo.full_name, self._int(ctx, ctx.params["index"], "index")))
        if issue is None:
            raise _Reject(self._not_found())
        return issue

    def _comment_for(self, ctx: _Ctx, repo: _Repo) -> SimComment:
        comment = self._comments.get(self._int(ctx, ctx.params["id"], "id"))
        # Gitea checks that the comment belongs to the repo in the URL
        if comment is None or comment.repo != repo.full_name:
            raise _Reject(self._not_found())
        return comment

    def _body_str(self, ctx: _Ctx, key: str, *, required: bool) -> str:
        value = ctx.body.get(key) if isinstance(ctx.body, dict) else None
        if isinstance(value, str) and (value or not required):
            return value
        if value is None and not required:
            return ""
        # only reachable without a spec (the spec check refuses such bodies first)
        self.violations.append(f"{ctx.what}: body field {key!r} missing or not a string")
        raise _Reject(self._error(422, f"[{key.capitalize()}]: Required"))

    # --- JSON as Gitea shapes it --------------------------------------------------------

    @property
    def _host(self) -> str:
        return self.root_url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]

    def _html(self, path: str) -> str:
        return f"{self.root_url}/{path}"

    def _api(self, path: str) -> str:
        return f"{self.root_url}{API_PREFIX}/{path}"

    def _user_json(self, login: str, *, as_self: bool = False) -> Json:
        user = self._users[login]
        host = self._host
        return {
            "id": user.id,
            "login": login,
            "login_name": "",
            "source_id": 0,
            "full_name": "",
            # without a viewer Gitea shows a placeholder address and hides activity
            "email": f"{login}@{host}" if as_self else f"{user.id}+{login}@noreply.{host}",
            "avatar_url": self._html(f"avatars/{user.id}"),
            "html_url": self._html(login),
            "language": "",
            "is_admin": user.is_admin and as_self,
            "last_login": user.created if as_self else _ZERO_TIME,
            "created": user.created,
            "restricted": False,
            "active": as_self,
            "prohibit_login": False,
            "location": "",
            "website": "",
            "description": "",
            "visibility": "public",
            "followers_count": 0,
            "following_count": 0,
            "starred_repos_count": 0,
            "username": login,
        }

    def _repo_json(self, repo: _Repo, viewer: str, *, with_parent: bool = True) -> Json:
        perm = self._perm(repo, viewer)
        full = repo.full_name
        out: Json = {
            "id": repo.id,
            "owner": self._user_json(repo.owner),
            "name": repo.name,
            "full_name": full,
            "description": "",
            "empty": False,
            "private": repo.private,
            "fork": repo.fork_of is not None,
            "template": False,
        }
        if repo.fork_of is not None and with_parent:
            out["parent"] = self._repo_json(self._repos[repo.fork_of], viewer, with_parent=False)
        out |= {
            "mirror": False,
            "size": 0,
            "language": "",
            "languages_url": self._api(f"repos/{full}/languages"),
            "html_url": self._html(full),
            "url": self._api(f"repos/{full}"),
            "link": "",
            "ssh_url": f"git@{self._host}:{full}.git",
            "clone_url": self._html(f"{full}.git"),
            "original_url": "",
            "website": "",
            "stars_count": 0,
            "forks_count": sum(1 for r in self._repos.values() if r.fork_of == full),
            "watchers_count": 0,
            "branch_count": 1,
            "open_issues_count": sum(
                1
                for i in self._issues.values()
                if i.repo == full and i.pull is None and i.state == "open"
            ),
            "open_pr_counter": sum(
                1
                for i in self._issues.values()
                if i.repo == full and i.pull is not None and i.state == "open"
            ),
            "release_counter": 0,
            "default_branch": repo.default_branch,
            "archived": False,
            "created_at": repo.created,
            "updated_at": repo.created,
            "archived_at": "1970-01-01T00:00:00Z",
            "permissions": {
                "admin": perm in ("admin", "owner"),
                "push": perm in ("write", "admin", "owner"),
                "pull": perm != "none",
            },
            "has_code": True,
            "has_issues": True,
            "internal_tracker": {
                "enable_time_tracker": True,
                "allow_only_contributors_to_track_time": True,
                "enable_issue_dependencies": True,
            },
            "has_wiki": True,
            "has_pull_requests": True,
            "has_projects": True,
            "projects_mode": "all",
            "has_releases": True,
            "has_packages": True,
            "has_actions": False,
            "ignore_whitespace_conflicts": False,
            "allow_merge_commits": True,
            "allow_rebase": True,
            "allow_rebase_explicit": True,
            "allow_squash_merge": True,
            "allow_fast_forward_only_merge": True,
            "allow_rebase_update": True,
            "allow_manual_merge": False,
            "autodetect_manual_merge": False,
            "default_delete_branch_after_merge": False,
            "default_merge_style": "merge",
            "default_allow_maintainer_edit": False,
            "avatar_url": "",
            "internal": False,
            "mirror_interval": "",
            "object_format_name": "sha1",
            "mirror_updated": _ZERO_TIME,
            "topics": [],
            "licenses": [],
        }
        return out

    def _issue_html(self, issue: _Issue) -> str:
        kind = "pulls" if issue.pull is not None else "issues"
        return self._html(f"{issue.repo}/{kind}/{issue.number}")

    def _issue_comment_count(self, issue: _Issue) -> int:
        return len(self.comments(issue.repo, issue.number))

    def _issue_json(self, issue: _Issue) -> Json:
        repo = self._repos[issue.repo]
        closed = issue.updated if issue.state == "closed" else None
        return {
            "id": issue.id,
            "url": self._api(f"repos/{issue.repo}/issues/{issue.number}"),
            "html_url": self._issue_html(issue),
            "number": issue.number,
            "user": self._user_json(issue.user),
            "original_author": "",
            "original_author_id": 0,
            "title": issue.title,
            "body": issue.body,
            "ref": "",
            "assets": [],
            "labels": [],
            "milestone": None,
            "assignee": None,
            "assignees": None,
            "state": issue.state,
            "is_locked": False,
            "comments": self._issue_comment_count(issue),
            "created_at": issue.created,
            "updated_at": issue.updated,
            "closed_at": closed,
            "due_date": None,
            "time_estimate": 0,
            "pull_request": None
            if issue.pull is None
            else {
                "merged": False,
                "merged_at": None,
                "draft": False,
                "html_url": self._issue_html(issue),
            },
            "repository": {
                "id": repo.id,
                "name": repo.name,
                "owner": repo.owner,
                "full_name": repo.full_name,
            },
            "pin_order": 0,
            "content_version": 0,
        }

    def _branch_json(self, ref: str, sha: str, repo: _Repo, viewer: str) -> Json:
        return {
            "label": ref,
            "ref": ref,
            "sha": sha,
            "repo_id": repo.id,
            "repo": self._repo_json(repo, viewer),
        }

    def _pull_json(self, issue: _Issue, pull: _Pull, viewer: str) -> Json:
        html = self._issue_html(issue)
        adds = sum(f.additions for f in pull.files)
        dels = sum(f.deletions for f in pull.files)
        return {
            "id": pull.id,
            "url": html,  # Gitea puts the HTML URL here, not the API one
            "number": issue.number,
            "user": self._user_json(issue.user),
            "title": issue.title,
            "body": issue.body,
            "labels": [],
            "milestone": None,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_reviewers_teams": [],
            "state": issue.state,
            "draft": False,
            "is_locked": False,
            "comments": self._issue_comment_count(issue),
            "additions": adds,
            "deletions": dels,
            "changed_files": len(pull.files),
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "mergeable": True,
            "merged": False,
            "merged_at": None,
            "merge_commit_sha": None,
            "merged_by": None,
            "allow_maintainer_edit": False,
            "base": self._branch_json(
                pull.base_ref, pull.base_sha, self._repos[issue.repo], viewer
            ),
            "head": self._branch_json(
                pull.head_ref, pull.head_sha, self._repos[pull.head_repo], viewer
            ),
            "merge_base": pull.base_sha,
            "due_date": None,
            "created_at": issue.created,
            "updated_at": issue.updated,
            "closed_at": issue.updated if issue.state == "closed" else None,
            "pin_order": 0,
            "content_version": 0,
        }

    def _comment_json(self, c: SimComment) -> Json:
        issue = self._issues[(c.repo, c.index)]
        html = self._issue_html(issue)
        is_pull = issue.pull is not None
        return {
            "id": c.id,
            "html_url": f"{html}#issuecomment-{c.id}",
            # exactly one of these is set, and both hold HTML URLs, as in Gitea
            "pull_request_url": html if is_pull else "",
            "issue_url": "" if is_pull else html,
            "user": self._user_json(c.user),
            "original_author": "",
            "original_author_id": 0,
            "body": c.body,
            "assets": [],
            "created_at": c.created_at,
            "updated_at": c.updated_at,
        }

    def _reaction_json(self, r: SimReaction) -> Json:
        return {"user": self._user_json(r.user), "content": r.content, "created_at": r.created_at}

    def _status_json(self, repo: _Repo, sha: str, s: SimStatus) -> Json:
        return {
            "id": s.id,
            "status": s.state,  # "status" in responses, "state" in requests and webhooks
            "target_url": s.target_url,
            "description": s.description,
            "url": self._api(f"repos/{repo.full_name}/statuses/{sha}"),
            "context": s.context,
            "creator": self._user_json(s.creator),
            "created_at": s.created_at,
            "updated_at": s.created_at,
        }

    def _file_json(self, repo: _Repo, sha: str, f: SimFile) -> Json:
        out: Json = {"filename": f.filename}
        if f.previous_filename:
            out["previous_filename"] = f.previous_filename
        return out | {
            "status": f.status,
            "additions": f.additions,
            "deletions": f.deletions,
            "changes": f.additions + f.deletions,
            "html_url": self._html(f"{repo.full_name}/src/commit/{sha}/{f.filename}"),
            "contents_url": self._api(f"repos/{repo.full_name}/contents/{f.filename}?ref={sha}"),
            "raw_url": self._html(f"{repo.full_name}/raw/commit/{sha}/{f.filename}"),
        }

    # --- endpoints (the table below maps spec templates to these) -------------------------

    def _get_user(self, ctx: _Ctx) -> _Answer:
        return _Answer(200, self._user_json(ctx.caller, as_self=True))

    def _org_is_member(self, ctx: _Ctx) -> _Answer:
        members = self._members.get(ctx.params["org"])
        if members is None:
            return self._not_found()
        caller = self._users[ctx.caller]
        if ctx.caller not in members and not caller.is_admin:
            # non-members only get to ask about public membership
            org, user = ctx.params["org"], ctx.params["username"]
            loc = f"{self.root_url}{API_PREFIX}/orgs/{org}/public_members/{user}"
            return _Answer(303, headers={"Location": loc})
        if ctx.params["username"] in members:
            return _Answer(204)
        return self._not_found()

    def _org_is_public_member(self, ctx: _Ctx) -> _Answer:
        members = self._members.get(ctx.params["org"])
        if members is not None and members.get(ctx.params["username"]):
            return _Answer(204)
        return self._not_found()

    def _get_issue(self, ctx: _Ctx) -> _Answer:
        repo = self._repo_for(ctx)
        return _Answer(200, self._issue_json(self._issue_for(ctx, repo)))

    def _list_comments(self, ctx: _Ctx) -> _Answer:
        repo = self._repo_for(ctx)
        issue = self._issue_for(ctx, repo)
        since = _parse_time(ctx.query.get("since", ""))
        before = _parse_time(ctx.query.get("before", ""))
        out = []
        for c in self.comments(repo.full_name, issue.number):
            updated = datetime.fromisoformat(c.updated_at)
            if (since is None or updated >= since) and (before is None or updated < before):
                out.append(self._comment_json(c))
        return _Answer(200, out, {"X-Total-Count": str(len(out))})

    def _create_comment(self, ctx: _Ctx) -> _Answer:
        repo = self._repo_for(ctx)
        issue = self._issue_for(ctx, repo)
        body = self._body_str(ctx, "body", required=True)
        cid = self._store_comment(repo.full_name, issue.number, body, ctx.caller)
        issue.updated = _now()
        self._wrote("comment", repo.full_name, ctx.caller, comment_id=cid, value=body)
        return _Answer(201, self._comment_json(self._comments[cid]))

    def _get_comment(self, ctx: _Ctx) -> _Answer:
        repo = self._repo_for(ctx)
        return _Answer(200, self._comment_json(self._comment_for(ctx, repo)))

    def _edit_comment(self, ctx: _Ctx) -> _Answer:
        repo = self._repo_for(ctx)
        comment = self._comment_for(ctx, repo)
        if comment.user != ctx.caller and self._perm(repo, ctx.caller) in ("none", "read"):
            # Gitea answers this one with an empty body
            return _Answer(403, raw=b"")
        body = self._body_str(ctx, "body", required=True)
        edited = replace(comment, body=body, updated_at=_now())
        self._comments[comment.id] = edited
        self._wrote("edit", repo.full_name, ctx.caller, comment_id=comment.id, value=body)
        return _Answer(200, self._comment_json(edited))

    def _list_reactions(self, ctx: _Ctx) -> _Answer:
        repo = self._repo_for(ctx)
        comment = self._comment_for(ctx, repo)
        return _Answer(200, [self._reaction_json(r) for r in self.reactions(comment.id)])

    def _post_reaction(self, ctx: _Ctx) -> _Answer:
        repo = self._repo_for(ctx)
        comment = self._comment_for(ctx, repo)
        content = self._body_str(ctx, "content", required=False)
        if content not in _ALLOWED_REACTIONS:
            return self._error(403, f"'{content}' is not an allowed reaction")
        existing = self._reactions.setdefault(comment.id, [])
        for r in existing:
            if (r.user, r.content) == (ctx.caller, content):
                return _Answer(200, self._reaction_json(r))
        reaction = SimReaction(ctx.caller, content, _now())
        existing.append(reaction)
        self._wrote("reaction", repo.full_name, ctx.caller, comment_id=comment.id, value=content)
        return _Answer(201, self._reaction_json(reaction))

    def _delete_reaction(self, ctx: _Ctx) -> _Answer:
        repo = self._repo_for(ctx)
        comment = self._comment_for(ctx, repo)
        content = self._body_str(ctx, "content", required=False)
        existing = self._reactions.get(comment.id, [])
        kept = [r for r in existing if (r.user, r.content) != (ctx.caller, content)]
        self._reactions[comment.id] = kept
        if len(kept) < len(existing):
            self._wrote(
                "unreaction", repo.full_name, ctx.caller, comment_id=comment.id, value=content
            )
        return _Answer(204)

    def _list_statuses(self, ctx: _Ctx) -> _Answer:
        repo = self._repo_for(ctx)
        sha = ctx.params["sha"]
        found = self.statuses(repo.full_name, sha)
        state = ctx.query.get("state")
        if state:
            found = [s for s in found if s.state == state]
        if ctx.query.get("sort") not in ("oldest", "leastupdate", "leastindex"):
            found.reverse()  # newest first unless asked otherwise
        page, headers = self._page(ctx, len(found))
        return _Answer(200, [self._status_json(repo, sha, s) for s in found[page]], headers)

    def _create_status(self, ctx: _Ctx) -> _Answer:
        repo = self._repo_for(ctx)
        if self._perm(repo, ctx.caller) in ("none", "read"):
            return self._error(403, "user should have write permission on this repository")
        state = self._body_str(ctx, "state", required=True)
        if state not in _STATUS_STATES:
            return self._error(400, f"invalid state {state!r}")
        sha = ctx.params["sha"]
        existing = self._statuses.setdefault((repo.full_name, sha), [])
        status = SimStatus(
            id=len(existing) + 1,
            state=state,
            context=self._body_str(ctx, "context", required=False),
            description=self._body_str(ctx, "description", required=False),
            target_url=self._body_str(ctx, "target_url", required=False),
            creator=ctx.caller,
            created_at=_now(),
        )
        existing.append(status)
        self._wrote(
            "status", repo.full_name, ctx.caller, sha=sha, value=state, note=status.description
        )
        return _Answer(201, self._status_json(repo, sha, status))

    def _get_pull(self, ctx: _Ctx) -> _Answer:
        repo = self._repo_for(ctx)
        issue = self._issue_for(ctx, repo)
        if issue.pull is None:
            return self._not_found()
        return _Answer(200, self._pull_json(issue, issue.pull, ctx.caller))

    def _list_pulls(self, ctx: _Ctx) -> _Answer:
        repo = self._repo_for(ctx)
        state = ctx.query.get("state", "open") or "open"
        pulls = [
            i
            for (name, _), i in sorted(self._issues.items())
            if name == repo.full_name and i.pull is not None and state in ("all", i.state)
        ]
        page, headers = self._page(ctx, len(pulls))
        body = [self._pull_json(i, i.pull, ctx.caller) for i in pulls[page] if i.pull]
        return _Answer(200, body, headers)

    def _org_repos(self, ctx: _Ctx) -> _Answer:
        org = ctx.params["org"]
        user = self._users.get(org)
        if user is None or not user.is_org:
            return self._not_found()
        repos = [
            r
            for name, r in sorted(self._repos.items())
            if r.owner == org and self._perm(r, ctx.caller) != "none"
        ]
        page, headers = self._page(ctx, len(repos))
        return _Answer(200, [self._repo_json(r, ctx.caller) for r in repos[page]], headers)

    def _pull_files(self, ctx: _Ctx) -> _Answer:
        repo = self._repo_for(ctx)
        issue = self._issue_for(ctx, repo)
        if issue.pull is None:
            return self._not_found()
        files = issue.pull.files
        page, headers = self._page(ctx, len(files))
        # these endpoints add GitHub-style paging headers on top of the usual ones
        current = int(headers["X-Page"])
        count = int(headers["X-PageCount"])
        headers["X-HasMore"] = "true" if current < count else "false"
        body = [self._file_json(repo, issue.pull.head_sha, f) for f in files[page]]
        return _Answer(200, body, headers)

    def _permission(self, ctx: _Ctx) -> _Answer:
        repo = self._repo_for(ctx)
        target = ctx.params["collaborator"]
        if target not in self._users or self._users[target].is_org:
            return self._not_found()
        if target != ctx.caller and self._perm(repo, ctx.caller) not in ("admin", "owner"):
            return self._error(
                403,
                "only admins can query all permissions, repo admins can query all repo "
                "permissions, collaborators can query only their own",
            )
        perm = self._perm(repo, target)
        return _Answer(
            200, {"permission": perm, "role_name": perm, "user": self._user_json(target)}
        )

    def _page(self, ctx: _Ctx, total: int) -> tuple[slice, dict[str, str]]:
        page = max(1, self._int(ctx, ctx.query.get("page", "1") or "1", "page"))
        limit = self._int(ctx, ctx.query.get("limit", "0") or "0", "limit")
        limit = _PAGE_DEFAULT if limit <= 0 else min(limit, _PAGE_MAX)
        pages = max(1, -(-total // limit))
        headers = {
            "X-Total-Count": str(total),
            "X-Page": str(page),
            "X-PerPage": str(limit),
            "X-PageCount": str(pages),
        }
        if pages > 1:
            base = f"{self.root_url}{API_PREFIX}{ctx.path}"
            links = []
            if page < pages:
                links.append(f'<{base}?limit={limit}&page={page + 1}>; rel="next"')
                links.append(f'<{base}?limit={limit}&page={pages}>; rel="last"')
            if page > 1:
                links.append(f'<{base}?limit={limit}&page=1>; rel="first"')
                links.append(f'<{base}?limit={limit}&page={page - 1}>; rel="prev"')
            headers["Link"] = ",".join(links)
        return slice((page - 1) * limit, page * limit), headers


GiteaSim._routes = {
    ("GET", "/user"): GiteaSim._get_user,
    ("GET", "/orgs/{org}/members/{username}"): GiteaSim._org_is_member,
    ("GET", "/orgs/{org}/public_members/{username}"): GiteaSim._org_is_public_member,
    ("GET", "/repos/{owner}/{repo}/issues/{index}"): GiteaSim._get_issue,
    ("GET", "/repos/{owner}/{repo}/issues/{index}/comments"): GiteaSim._list_comments,
    ("POST", "/repos/{owner}/{repo}/issues/{index}/comments"): GiteaSim._create_comment,
    ("GET", "/repos/{owner}/{repo}/issues/comments/{id}"): GiteaSim._get_comment,
    ("PATCH", "/repos/{owner}/{repo}/issues/comments/{id}"): GiteaSim._edit_comment,
    ("GET", "/repos/{owner}/{repo}/issues/comments/{id}/reactions"): GiteaSim._list_reactions,
    ("POST", "/repos/{owner}/{repo}/issues/comments/{id}/reactions"): GiteaSim._post_reaction,
    ("DELETE", "/repos/{owner}/{repo}/issues/comments/{id}/reactions"): GiteaSim._delete_reaction,
    ("GET", "/repos/{owner}/{repo}/statuses/{sha}"): GiteaSim._list_statuses,
    ("POST", "/repos/{owner}/{repo}/statuses/{sha}"): GiteaSim._create_status,
    ("GET", "/repos/{owner}/{repo}/pulls"): GiteaSim._list_pulls,
    ("GET", "/orgs/{org}/repos"): GiteaSim._org_repos,
    ("GET", "/repos/{owner}/{repo}/pulls/{index}"): GiteaSim._get_pull,
    ("GET", "/repos/{owner}/{repo}/pulls/{index}/files"): GiteaSim._pull_files,
    (
        "GET",
        "/repos/{owner}/{repo}/collaborators/{collaborator}/permission",
    ): GiteaSim._permission,
}
