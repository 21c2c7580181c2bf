"""results.json (schema 2) and JUnit: parsed when sound, a precise ResultsError when not."""

from __future__ import annotations

import json

import pytest

from bot.verdict.results import ResultsError, parse_results

GOOD = {
    "schema": 2,
    "recipe": "mumble",
    "version": "1.2.0+1.5",
    "pr": "",
    "ref": "",
    "run_id": "r1",
    "finished": "2026-06-17T01:02:03Z",
    "stages": [
        {
            "name": "install",
            "status": "pass",
            "tests": [{"name": "test_install.py::test_up", "status": "pass", "ms": 10}],
        },
        {
            "name": "custom",
            "status": "fail",
            "tests": [
                {
                    "name": "custom/test_protocol_handshake.py::test_handshake",
                    "status": "fail",
                    "ms": 30000,
                }
            ],
        },
        {"name": "restore", "status": "error", "tests": []},
    ],
    "level": 3,
    "flags": {"clean_teardown": True, "no_secret_leak": True},
}
JUNIT = b"""<?xml version="1.0"?><testsuites><testsuite name="pytest">
<testcase classname="custom.test_protocol_handshake" name="test_handshake">
<failure message="AssertionError: handshake did not complete&#10;second line">trace</failure>
</testcase></testsuite></testsuites>"""


def test_good_results_with_junit_message() -> None:
    s = parse_results(json.dumps(GOOD).encode(), {"junit-custom.xml": JUNIT})
    assert s.red
    assert s.failed_stages == ("custom", "restore")
    assert [t.test_id for t in s.failing] == ["custom/test_protocol_handshake.py::test_handshake"]
    assert s.failing[0].message == "AssertionError: handshake did not complete"
    assert s.failure_keys() == {
        "custom/test_protocol_handshake.py::test_handshake",
        "stage:restore",
    }


def test_green_results() -> None:
    doc = dict(GOOD, stages=[GOOD["stages"][0]])  # type: ignore[index]
    s = parse_results(json.dumps(doc).encode())
    assert not s.red
    assert s.failing == ()


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps({"recipe": "x"}).encode(), "stages"),
        (json.dumps(dict(GOOD, schema=1)).encode(), "schema 1"),
        (json.dumps(dict(GOOD, stages=[{"name": "x"}])).encode(), "status"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_bad_results_say_why(raw: bytes, fragment: str) -> None:
    with pytest.raises(ResultsError, match=fragment):
        parse_results(raw)


def test_hostile_junit_is_not_expanded() -> None:
    bomb = b"""<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">
<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><testsuite><testcase name="t">
<failure message="&b;"/></testcase></testsuite>"""
    s = parse_results(json.dumps(GOOD).encode(), {"evil.xml": bomb})
    # The bomb is refused, the results still parse; the message is simply unknown.
    assert s.failing[0].message == ""


def test_oversized_results_refused() -> None:
    with pytest.raises(ResultsError, match="over the"):
        parse_results(b" " * (4 * 1024 * 1024 + 1))


CLASSES = b"""<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="3" failures="2">
<testcase classname="tests.test_api.TestV1" name="test_list">
<failure message="AssertionError: v1 lists 3 items, expected 4">x</failure></testcase>
<testcase classname="tests.test_api.TestV2" name="test_list">
<failure message="AssertionError: v2 answered 500">y</failure></testcase>
<testcase classname="tests.test_api.TestV2" name="test_get"/>
</testsuite></testsuites>"""


def test_class_based_tests_each_show_their_own_message() -> None:
    doc = {
        "recipe": "api",
        "stages": [
            {
                "name": "pytest",
                "status": "fail",
                "tests": [
                    {"name": "tests/test_api.py::TestV1::test_list", "status": "fail"},
                    {"name": "tests/test_api.py::TestV2::test_list", "status": "fail"},
                    {"name": "tests/test_api.py::TestV2::test_get", "status": "pass"},
                ],
            }
        ],
    }
    s = parse_results(json.dumps(doc).encode(), {"junit.xml": CLASSES})
    assert [(t.test_id, t.message) for t in s.failing] == [
        ("tests/test_api.py::TestV1::test_list", "AssertionError: v1 lists 3 items, expected 4"),
        ("tests/test_api.py::TestV2::test_list", "AssertionError: v2 answered 500"),
    ]


def test_a_bare_name_two_cases_share_gives_no_message_rather_than_the_wrong_one() -> None:
    doc = {
        "recipe": "api",
        "stages": [
            {"name": "pytest", "status": "fail", "tests": [{"name": "test_list", "status": "fail"}]}
        ],
    }
    s = parse_results(json.dumps(doc).encode(), {"junit.xml": CLASSES})
    assert [t.message for t in s.failing] == [""]


@pytest.mark.parametrize(
    ("classname", "name", "file", "node"),
    [
        ("tests.test_api.TestV2", "test_x", "", "tests/test_api.py::TestV2::test_x"),
        ("tests.test_api", "test_x", "", "tests/test_api.py::test_x"),
        ("test_api.TestOuter.TestInner", "t", "", "test_api.py::TestOuter::TestInner::t"),
        ("custom.test_protocol_handshake", "t", "", "custom/test_protocol_handshake.py::t"),
        ("pkg.tests.Test_x", "t", "pkg/tests.py", "pkg/tests.py::Test_x::t"),
        ("", "t", "", "t"),
    ],
)
def test_junit_names_map_to_pytest_node_ids(
    classname: str, name: str, file: str, node: str
) -> None:
    from bot.verdict.results import junit_key, junit_node_id

    assert junit_node_id(classname, name, file) == node
    if classname and not file:
        assert junit_key(node) == (classname, name)  # and back


@pytest.mark.parametrize(
    ("stage", "test", "problem"),
    [
        (
            "failed",
            "pass",
            "unknown status 'failed' in stage custom (known: pass, fail, error, skip)",
        ),
        ("fail", "FAILED", "unknown status 'FAILED' of test t.py::t in stage custom"),
        ("ok", "pass", "unknown status 'ok' in stage custom"),
    ],
)
def test_an_unknown_status_word_is_refused_never_read_as_green(
    stage: str, test: str, problem: str
) -> None:
    def doc(stage: str, test: str) -> bytes:
        tests = [{"name": "t.py::t", "status": test}]
        return json.dumps(
            {"recipe": "x", "stages": [{"name": "custom", "status": stage, "tests": tests}]}
        ).encode()

    with pytest.raises(ResultsError) as ei:
        parse_results(doc(stage, test))
    assert problem in str(ei.value)
    assert parse_results(doc("fail", "fail")).red  # positive control: the known words parse
