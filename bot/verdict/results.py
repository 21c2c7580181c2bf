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


def _junit_messages(junit_files: Mapping[str, bytes]) -> tuple[dict[str, str], list[str]]:
    """Map test ids (pytest node ids) to their first assertion line; report unreadable files."""
    messages: dict[str, str] = {}
    problems: list[str] = []
    for fname, raw in sorted(junit_files.items()):
        try:
            root: Element = SafeET.fromstring(raw)
        except (SafeET.ParseError, DefusedXmlException, ValueError) as e:
            problems.append(f"{fname}: unreadable JUnit XML ({e.__class__.__name__})")
            continue
        for case in root.iter("testcase"):
            bad = case.find("failure")
            if bad is None:
                bad = case.find("error")
            if bad is None:
                continue
            text = bad.get("message") or (bad.text or "")
            name = case.get("name", "")
            classname = case.get("classname", "")
            node_id = f"{classname.replace('.', '/')}.py::{name}" if classname else name
            messages[node_id] = first_line(text)
            messages.setdefault(f"::{name}", first_line(text))
    return messages, problems


def _message_for(test_id: str, given: str | None, junit: Mapping[str, str]) -> str:
    if given:
        return first_line(given)
    if test_id in junit:
        return junit[test_id]
    return junit.get("::" + test_id.rpartition("::")[2], "")


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
