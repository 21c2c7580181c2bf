"""Reading what the harness leaves behind: results.json (schema 2) and JUnit XML (untrusted)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.model import FailingTest, ResultsSummary, StageResult
from bot.model.errors import InputError

log = logging.getLogger(__name__)

MAX_RESULTS_BYTES = 4 * 1024 * 1024
MAX_MESSAGE_CHARS = 300
RED_STATUSES = ("fail", "error")
# Every status word results.json may use (docs/harness.md). Any other word makes the results
# unusable, never silently green: `failed` is not `fail`.
STATUSES = ("pass", "fail", "error", "skip")


class ResultsError(InputError):
    """results.json or a JUnit file that cannot be used; the message says exactly why."""


class _Test(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    status: str
    ms: float | None = None
    message: str | None = None


class _Stage(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    status: str
    tests: list[_Test] = Field(default_factory=list)


class _Results(BaseModel):
    model_config = ConfigDict(extra="allow")
    schema_: int | None = Field(None, alias="schema")
    recipe: str
    version: str = ""
    run_id: str = ""
    stages: list[_Stage]


def run_marks(raw: bytes, verification_field: str) -> tuple[str, float | None]:
    """Two top-level values of a results.json the sweep scan needs: the verification field's
    value ("" when absent, empty, or not text or a number: not a verification) and the
    `finished` time as epoch seconds (None when absent or not ISO 8601). Never raises."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "", None
    if not isinstance(doc, dict):
        return "", None
    value = doc.get(verification_field) if verification_field else None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        marked = ""
    else:
        marked = str(value).strip()
    finished: float | None = None
    stamp = doc.get("finished")
    if isinstance(stamp, str):
        try:
            when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            when = None
        if when is not None:
            finished = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    return marked, finished


def first_line(text: str) -> str:
    """The first non-blank line, trimmed to a size fit for a table cell."""
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= MAX_MESSAGE_CHARS else line[: MAX_MESSAGE_CHARS - 1] + "…"
    return ""


def junit_node_id(classname: str, name: str, file: str = "") -> str:
    """The pytest node id of a JUnit test case: `tests.test_api.TestV2` + `test_x` is
    `tests/test_api.py::TestV2::test_x`. The module ends where the dotted names stop being
    lower-case (classes are CamelCase by convention) unless the case's `file` says where."""
    parts = [p for p in classname.split(".") if p]
    if file.endswith(".py"):
        module = file.removesuffix(".py").replace("/", ".")
        if classname == module or classname.startswith(module + "."):
            rest = classname[len(module) :].lstrip(".")
            return "::".join([file, *(rest.split(".") if rest else []), name])
    cut = next((i for i, p in enumerate(parts) if p[:1].isupper()), len(parts))
    if cut == 0:
        return "::".join([*parts, name]) if parts else name
    module = "/".join(parts[:cut]) + ".py"
    return "::".join([module, *parts[cut:], name])


def junit_key(test_id: str) -> tuple[str, str]:
    """A results test id as JUnit names it: (classname, name)."""
    path, _, rest = test_id.partition("::")
    if not rest:
        return "", test_id
    *classes, name = rest.split("::")
    module = path.removesuffix(".py").replace("/", ".")
    return ".".join([module, *classes]), name


def _junit_roots(
    junit_files: Mapping[str, bytes],
) -> tuple[list[tuple[str, Element]], list[str]]:
    """Each JUnit file's name and root element (parsed safely), and why the others were
    unreadable."""
    roots: list[tuple[str, Element]] = []
    problems: list[str] = []
    for fname, raw in sorted(junit_files.items()):
        try:
            roots.append((fname, SafeET.fromstring(raw)))
        except (SafeET.ParseError, DefusedXmlException, ValueError) as e:
            problems.append(f"{fname}: unreadable JUnit XML ({e.__class__.__name__})")
    return roots, problems


def _junit_messages(junit_files: Mapping[str, bytes]) -> tuple[dict[str, str], list[str]]:
    """Map each failed JUnit case — by (classname, name), by node id, and by bare name when
    only one case has it — to its first assertion line; report unreadable files."""
    messages: dict[str, str] = {}
    bare: dict[str, list[str]] = {}
    roots, problems = _junit_roots(junit_files)
    for _fname, root in roots:
        for case in root.iter("testcase"):
            bad = case.find("failure")
            if bad is None:
                bad = case.find("error")
            if bad is None:
                continue
            text = first_line(bad.get("message") or (bad.text or ""))
            name = case.get("name", "")
            classname = case.get("classname", "")
            messages[f"{classname}\0{name}"] = text
            messages.setdefault(junit_node_id(classname, name, case.get("file", "")), text)
            bare.setdefault(name, []).append(text)
    for name, texts in bare.items():
        if len(set(texts)) == 1:  # ambiguous bare names match nothing: never the wrong one
            messages.setdefault(f"::{name}", texts[0])
    return messages, problems


def _message_for(test_id: str, given: str | None, junit: Mapping[str, str]) -> str:
    if given:
        return first_line(given)
    classname, name = junit_key(test_id)
    for key in (f"{classname}\0{name}", test_id, f"::{name}"):
        if key in junit:
            return junit[key]
    return ""


def parse_results(raw: bytes, junit_files: Mapping[str, bytes] | None = None) -> ResultsSummary:
    """Parse results.json (and optional JUnit XML files) into a summary; ResultsError if bad."""
    if len(raw) > MAX_RESULTS_BYTES:
        raise ResultsError(f"results.json is {len(raw)} bytes, over the {MAX_RESULTS_BYTES} limit")
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultsError(f"results.json is not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ResultsError("results.json is not a JSON object")
    try:
        res = _Results.model_validate(doc)
    except ValidationError as e:
        where = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in e.errors()[:5]
        )
        raise ResultsError(f"results.json does not match schema 2 ({where})") from None
    if res.schema_ is not None and res.schema_ != 2:
        raise ResultsError(f"results.json has schema {res.schema_}; redfix reads schema 2")
    known = ", ".join(STATUSES)
    for stage in res.stages:
        if stage.status not in STATUSES:
            raise ResultsError(
                f"unknown status {stage.status!r} in stage {stage.name} (known: {known})"
            )
        for t in stage.tests:
            if t.status not in STATUSES:
                raise ResultsError(
                    f"unknown status {t.status!r} of test {t.name} in stage {stage.name} "
                    f"(known: {known})"
                )
    junit, problems = _junit_messages(junit_files or {})
    for problem in problems:  # the results still stand; only assertion texts are missing
        log.warning("%s", problem)
    failing = tuple(
        FailingTest(
            test_id=t.name,
            stage=s.name,
            status=t.status,
            message=_message_for(t.name, t.message, junit),
        )
        for s in res.stages
        for t in s.tests
        if t.status in RED_STATUSES
    )
    return ResultsSummary(
        run_id=res.run_id,
        recipe=res.recipe,
        version=res.version,
        stages=tuple(StageResult(s.name, s.status) for s in res.stages),
        failing=failing,
    )


def parse_junit_results(run_id: str, unit: str, junit_files: Mapping[str, bytes]) -> ResultsSummary:
    """A run's results from its JUnit XML alone (the `junit` profile): red iff a case has a
    `failure` or an `error`; each test suite is a stage (a file's suites, by their names).
    ResultsError when there is no readable file or no test case at all."""
    if not junit_files:
        raise ResultsError("no JUnit XML file in the run's directory")
    stages: dict[str, list[str]] = {}
    failing: list[FailingTest] = []
    roots, problems = _junit_roots(junit_files)
    for fname, root in roots:
        suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
        for suite in suites:
            if suite.find("testsuite") is not None:
                continue  # a suite of suites: its leaves are the stages
            stage = suite.get("name") or fname.removesuffix(".xml")
            statuses = stages.setdefault(stage, [])
            for case in suite.findall("testcase"):
                test_id = junit_node_id(
                    case.get("classname", ""), case.get("name", ""), case.get("file", "")
                )
                status = "pass"
                for tag, word in (("failure", "fail"), ("error", "error"), ("skipped", "skip")):
                    found = case.find(tag)
                    if found is not None:
                        status = word
                        if word != "skip":
                            text = found.get("message") or (found.text or "")
                            failing.append(FailingTest(test_id, stage, word, first_line(text)))
                        break
                statuses.append(status)
    if problems and not stages:
        raise ResultsError("; ".join(problems))
    for problem in problems:
        log.warning("%s", problem)
    if not any(stages.values()):
        raise ResultsError("the JUnit XML holds no test case")

    def stage_status(statuses: list[str]) -> str:
        for word in ("fail", "error"):
            if word in statuses:
                return word
        return "skip" if statuses and all(s == "skip" for s in statuses) else "pass"

    return ResultsSummary(
        run_id=run_id,
        recipe=unit,
        version="",
        stages=tuple(StageResult(name, stage_status(st)) for name, st in stages.items()),
        failing=tuple(failing),
    )
