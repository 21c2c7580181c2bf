"""Property tests of the Gitea payload decoder (bot.adapters.gitea.payload.to_incoming): whatever a
signed body holds, it answers an Incoming, an Ignore, or raises PayloadError — never anything
else — and a valid payload decodes to the Origin its fields say."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.adapters.gitea.payload import (
    HANDLED_EVENTS,
    INT64_MAX,
    MAX_JSON_DEPTH,
    POLL_EVENT,
    json_nesting_exceeds,
    to_incoming,
)
from bot.model import Command, Ignore, Incoming, PullEvent, Source
from bot.model.errors import PayloadError
from bot.sim import deliveries

EVENTS = [*sorted(HANDLED_EVENTS), "push", "status", ""]
BOT = "redfix"
PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decode(event: str, body: bytes) -> Incoming | Ignore | PayloadError:
    """to_incoming's answer, with PayloadError as a value; anything else it raises escapes."""
    try:
        return to_incoming(event, "d-1", body, BOT)
    except PayloadError as e:
        error = e
    assert str(error), "a PayloadError always says what is wrong"
    return error


# --- strategies -----------------------------------------------------------------------------

# Numbers around the edges: int64's, the 20-digit cut, and Python's 4300-digit int() limit
# (longer ones cannot be made by json.dumps; test_ids_outside_int64_name_the_field writes them).
EDGE_INTS = st.sampled_from(
    [0, -1, 1, INT64_MAX, INT64_MAX + 1, -(2**63), 2**64, 10**19, 10**20, 10**4299]
)
INTS = st.one_of(st.integers(), EDGE_INTS, st.integers(min_value=2**63, max_value=10**80))
TEXT = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["!redfix status", "!redfix isolate mumble --runs ²", "!testme", "\ud800", "é" * 5, ""]
)
SCALARS = st.none() | st.booleans() | INTS | st.floats(allow_nan=False, allow_infinity=False) | TEXT
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)


def dumps(value: Any) -> bytes:
    # ensure_ascii keeps lone surrogates encodable (as \ud800 escapes, which JSON allows)
    return json.dumps(value).encode()


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = _replace(value[head], rest, new)
    return copy


def valid_payload(event: str) -> dict[str, Any]:
    if event == "pull_request":
        body = deliveries.pull_request("acme/widgets", 42, "synchronized", "ab" * 20, "alice")
    elif event == POLL_EVENT:
        return {
            "repo": "acme/widgets",
            "number": 42,
            "comment_id": 7,
            "author": "alice",
            "body": "!redfix status",
        }
    else:
        body = deliveries.issue_comment(
            "acme/widgets", 42, 7, "alice", "!redfix status", head_sha="cd" * 20
        )
    parsed: dict[str, Any] = json.loads(body)
    return parsed


# --- never anything but PayloadError ------------------------------------------------------


@PROPS
@given(st.sampled_from(EVENTS), st.binary(max_size=300))
@example("issue_comment", b"[" * 5000)
@example("issue_comment", b'{"a":' * 5000)
@example("issue_comment", b'"' + b'\\"' * 2000)
@example("pull_request", b"9" * 5000)
@example("issue_comment", b"\xef\xbb\xbf{}")
@example("issue_comment", b'{"comment": {"id": Infinity}}')
@example("issue_comment", b'{"comment": {"id": -Infinity, "x": NaN}}')
def test_arbitrary_bytes(event: str, body: bytes) -> None:
    decode(event, body)


@PROPS
@given(st.sampled_from(EVENTS), JSON)
def test_arbitrary_json(event: str, value: Any) -> None:
    decode(event, dumps(value))


@PROPS
@given(st.sampled_from(sorted(HANDLED_EVENTS)), st.data())
def test_valid_payload_with_any_one_field_replaced(event: str, data: st.DataObject) -> None:
    """The adversarial middle ground: a real payload with one value (at any depth) swapped for
    arbitrary JSON, a huge number, or deep nesting."""
    payload = valid_payload(event)
    path = data.draw(st.sampled_from(_paths(payload)), label="path")
    new = data.draw(JSON | INTS | st.integers(MAX_JSON_DEPTH - 2, 3000).map(Deep), label="new")
    if isinstance(new, Deep):  # written as text: json.dumps itself recurses
        body = dumps(_replace(payload, path, "@deep@")).replace(b'"@deep@"', new.text())
    else:
        body = dumps(_replace(payload, path, new))
    decode(event, body)


class Deep:
    def __init__(self, depth: int) -> None:
        self.depth = depth

    def text(self) -> bytes:
        return b'[{"a":' * (self.depth // 2) + b"1" + b"}]" * (self.depth // 2)


def _nested(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


@PROPS
@given(
    st.sampled_from(sorted(HANDLED_EVENTS)),
    st.integers(MAX_JSON_DEPTH + 1, 20_000),
    st.sampled_from(["arrays", "objects"]),
)
def test_deep_nesting_is_a_payload_error(event: str, depth: int, kind: str) -> None:
    opener, closer = ("[", "]") if kind == "arrays" else ('{"a":', "}")
    deep = opener * depth + "1" + closer * depth
    payload = dumps(valid_payload(event)).replace(b'"alice"', deep.encode(), 1)
    result = decode(event, payload)
    assert isinstance(result, PayloadError)
    assert f"nested deeper than {MAX_JSON_DEPTH}" in str(result)


INT_FIELDS: dict[str, list[tuple[str, ...]]] = {
    "issue_comment": [("comment", "id"), ("issue", "number")],
    "pull_request": [("number",)],
    POLL_EVENT: [("comment_id",), ("number",)],
}


@PROPS
@given(st.sampled_from(sorted(HANDLED_EVENTS)), st.data())
def test_ids_outside_int64_name_the_field(event: str, data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(INT_FIELDS[event]))
    digits = data.draw(st.integers(1, 6000), label="digits")
    # Written out as digits, not through int(): 6000-digit ints are beyond Python's limit too.
    number = data.draw(
        st.sampled_from(["9" * digits, "-" + "9" * digits, str(INT64_MAX + 1), "0", "-1"])
    )
    marker = 12345678987654321
    payload = dumps(_replace(valid_payload(event), path, marker))
    body = payload.replace(str(marker).encode(), number.encode())
    result = decode(event, body)
    fits = 1 <= int(number) <= INT64_MAX if len(number) < 30 else False
    if fits:
        assert not isinstance(result, PayloadError)
    else:
        assert isinstance(result, PayloadError)
        assert ".".join(path) in str(result), result


# --- what counts as valid: Gitea's own rules ----------------------------------------------

# Gitea's rule for names, as older releases wrote it (AlphaDashDot, at most 40): accounts
# made then still exist, so it is what a delivery's login can be. Today's stricter rule for
# new names (alphanumeric ends, no doubled -._) must pass too: it is a subset.
_GITEA_ALPHA_DASH_DOT = re.compile(r"^[-_.a-zA-Z0-9]+\Z")
_GITEA_VALID_USERNAME = re.compile(r"^[\da-zA-Z][-.\w]*\Z", re.ASCII)
_GITEA_INVALID_USERNAME = re.compile(r"[-._]{2,}|[-._]\Z")


def gitea_accepts_login(name: str) -> bool:
    return len(name) <= 40 and _GITEA_ALPHA_DASH_DOT.match(name) is not None


def gitea_accepts_new_login(name: str) -> bool:
    return (
        len(name) <= 40
        and _GITEA_VALID_USERNAME.match(name) is not None
        and _GITEA_INVALID_USERNAME.search(name) is None
    )


def gitea_accepts_repo_name(name: str) -> bool:
    return (
        len(name) <= 100
        and re.fullmatch(r"[-.\w]+", name, re.ASCII) is not None
        and ".." not in name
        and name not in (".", "-")
        and not name.lower().endswith((".wiki", ".git", ".rss", ".atom"))
    )


NAMEISH = st.text(st.sampled_from("aZ09-._/ é\n\x00"), min_size=0, max_size=45) | st.sampled_from(
    ["a" * 40, "a" * 41, "a_b", "a__b", "a.", "-a", "a-", "ghost", "gitea-actions", "a\n"]
)


@PROPS
@given(NAMEISH)
def test_logins_follow_gitea_rules(name: str) -> None:
    payload = dumps(_replace(valid_payload("issue_comment"), ("comment", "user", "login"), name))
    result = decode("issue_comment", payload)
    if gitea_accepts_new_login(name):
        assert gitea_accepts_login(name)  # today's rule is a subset of the legacy one
    if gitea_accepts_login(name):
        assert isinstance(result, Incoming), result
        assert result.origin.author == name
    else:
        assert isinstance(result, PayloadError), name
        assert "comment.user.login: not a Gitea login" in str(result)


@PROPS
@given(NAMEISH, NAMEISH)
@example("acme", "a" * 100)
@example("acme", "a" * 101)
@example("acme", "..")
@example("acme", "x.git")
def test_repository_names_follow_gitea_rules(owner: str, name: str) -> None:
    payload = dumps(
        _replace(valid_payload("pull_request"), ("repository", "full_name"), f"{owner}/{name}")
    )
    result = decode("pull_request", payload)
    if gitea_accepts_login(owner) and gitea_accepts_repo_name(name):
        assert isinstance(result, Incoming), result
        assert result.origin.repo == f"{owner}/{name}"
    else:
        assert isinstance(result, PayloadError), (owner, name)
        assert "repository.full_name" in str(result)


SHAISH = st.text(st.sampled_from("0123456789abcdefABCDEFgz $"), min_size=38, max_size=66)


@PROPS
@given(SHAISH)
@example("A" * 40)
@example("f" * 64)
@example("$(id)" + "0" * 35)
def test_pull_request_head_sha_is_hex_or_refused(sha: str) -> None:
    payload = dumps(_replace(valid_payload("pull_request"), ("pull_request", "head", "sha"), sha))
    result = decode("pull_request", payload)
    if re.fullmatch(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}", sha):
        assert isinstance(result, Incoming)
        assert isinstance(result.outcome, Command)
        assert isinstance(result.outcome.args, PullEvent)
        assert result.outcome.args.head_sha == sha.lower() == result.head_sha
        assert result.origin.event_key == f"pull:synchronized:{sha.lower()}"
    else:
        assert isinstance(result, PayloadError)
        assert "pull_request.head.sha: not a commit id" in str(result)


@PROPS
@given(SHAISH | JSON)
def test_a_comments_bad_head_sha_is_treated_as_absent(sha: Any) -> None:
    """The command stands (the bot reads the PR head from Gitea when it acts); only a well-formed
    head is passed on."""
    path = ("pull_request", "head", "sha")
    result = decode("issue_comment", dumps(_replace(valid_payload("issue_comment"), path, sha)))
    assert isinstance(result, Incoming), result
    good = isinstance(sha, str) and re.fullmatch(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}", sha)
    assert result.head_sha == (sha.lower() if good else "")


# --- round trip: a valid payload decodes to the Origin its fields say ----------------------

LOGINS = st.from_regex(r"\A[0-9A-Za-z]{1,8}(?:[-._][0-9A-Za-z]{1,8}){0,3}\Z").filter(
    lambda s: len(s) <= 40 and s.lower() != BOT
)
REPO_NAMES = st.from_regex(r"(?a)\A[-\w]{1,20}(?:\.[-\w]{1,10}){0,2}\Z").filter(
    gitea_accepts_repo_name
)
IDS = st.integers(1, INT64_MAX)
SHAS = st.text("0123456789abcdefABCDEF", min_size=40, max_size=40) | st.text(
    "0123456789abcdef", min_size=64, max_size=64
)


@PROPS
@given(LOGINS, REPO_NAMES, IDS, IDS, LOGINS, SHAS)
def test_round_trip_issue_comment(
    owner: str, name: str, number: int, cid: int, author: str, sha: str
) -> None:
    repo = f"{owner}/{name}"
    body = deliveries.issue_comment(repo, number, cid, author, "!redfix status", head_sha=sha)
    result = decode("issue_comment", body)
    assert isinstance(result, Incoming), result
    o = result.origin
    assert (o.source, o.repo, o.number, o.comment_id, o.author) == (
        Source.GITEA,
        repo,
        number,
        cid,
        author,
    )
    assert o.html_url.endswith(f"/{repo}/pulls/{number}#issuecomment-{cid}")
    assert result.head_sha == sha.lower()
    assert isinstance(result.outcome, Command)
    assert result.outcome.name == "status"
    # The poll sweep's shape of the same comment is the same command (one semantic key).
    polled = {
        "repo": repo,
        "number": number,
        "comment_id": cid,
        "author": author,
        "body": "!redfix status",
    }
    again = decode(POLL_EVENT, json.dumps(polled).encode())
    assert isinstance(again, Incoming)
    assert again.origin.dedupe_key == o.dedupe_key


@PROPS
@given(LOGINS, REPO_NAMES, IDS, SHAS, st.sampled_from(["opened", "synchronized", "closed"]))
def test_round_trip_pull_request(owner: str, name: str, number: int, sha: str, action: str) -> None:
    repo = f"{owner}/{name}"
    body = deliveries.pull_request(repo, number, action, sha, "alice", merged=action == "closed")
    result = decode("pull_request", body)
    assert isinstance(result, Incoming), result
    assert (result.origin.repo, result.origin.number, result.origin.author) == (
        repo,
        number,
        "alice",
    )
    assert isinstance(result.outcome, Command)
    assert result.outcome.args == PullEvent(action, sha.lower(), action == "closed")


# --- the depth scan itself ----------------------------------------------------------------


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@PROPS
@given(JSON | st.integers(0, 200).map(_nested), st.integers(0, 80))
def test_depth_scan_agrees_with_the_decoded_depth(value: Any, limit: int) -> None:
    """Counted without recursion, brackets in strings ignored: the same answer as the depth of
    what json decodes (strings full of brackets and quotes included)."""
    # Raw UTF-8 (brackets and quotes next to multi-byte text); lone surrogates passed through.
    body = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    assert json_nesting_exceeds(body, limit) == (_depth(value) > limit)


@pytest.mark.parametrize(
    "text",
    ['"[[[[[[" ', '{"a": "\\\\"}', '["\\"[[["]', '"' + "\\u005b" * 100 + '"'],
)
def test_brackets_inside_strings_do_not_count(text: str) -> None:
    assert not json_nesting_exceeds(text.encode(), 1)
    assert json_nesting_exceeds(b"[" * 3 + text.encode() + b"]" * 3, 2)
