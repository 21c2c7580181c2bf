"""/metrics, /healthz and logs: what an operator sees, and that no secret is in it."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re

import pytest

from bot.cli import configure_logging
from bot.render.redact import Redactor
from tests.conftest import GITEA_TOKEN, WEBHOOK_SECRET, RigFactory

REPO = "recipe-maintainers/mumble"


def metric(text: str, metric_name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (fails if absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-z_]+)(\{([^}]*)\})? (\S+)$", line)
        if m and m[1] == metric_name:
            got = ",".join(sorted(m[3].split(","))) if m[3] else ""
            if got == want:
                return float(m[4])
    raise AssertionError(f"no sample {metric_name}{{{want}}} in:\n{text}")


@pytest.mark.slow
async def test_metrics_count_deliveries_commands_runs_and_verdicts(make_rig: RigFactory) -> None:
    async with make_rig(sweep={"mattermost-lts": "R"}) as rig:
        await rig.comment(REPO, 4, "alice", "!redfix isolate mattermost-lts --runs 1")
        await rig.comment(REPO, 4, "mallory", "!redfix isolate mumble")
        body = b'{"action": "created"}'
        assert (await rig.post(body, secret="wrong-secret-123")).status_code == 401
        await asyncio.wait_for(rig.bot.idle(), 60)
        resp = await rig.http.get(f"{rig.url}/metrics")
        assert resp.status_code == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.text
        assert (
            metric(text, "redfix_deliveries_total", event="issue_comment", result="accepted") == 2
        )
        assert (
            metric(text, "redfix_deliveries_total", event="issue_comment", result="bad_signature")
            == 1
        )
        assert metric(text, "redfix_commands_total", name="isolate", result="done") == 1
        assert metric(text, "redfix_commands_total", name="isolate", result="refused") == 1
        assert metric(text, "redfix_runs", kind="isolation", state="red") == 1
        assert metric(text, "redfix_verdicts_total", outcome="genuine", cause="recipe") == 1
        assert metric(text, "redfix_classification_rate") == 1.0
        assert metric(text, "redfix_time_to_verdict_seconds_count") == 1
        assert metric(text, "redfix_queue_depth") == 0
        assert metric(text, "redfix_queue_wait_seconds_count") == 1
        assert metric(text, "redfix_outbox_depth") == 0
        assert metric(text, "redfix_ssh_connection_errors_total", host="sshd-test") == 0


@pytest.mark.slow
async def test_healthz_reports_hosts_and_503_when_the_store_is_gone(make_rig: RigFactory) -> None:
    async with make_rig() as rig:
        assert await rig.bot.runners["sshd-test"].check()
        h = (await rig.http.get(f"{rig.url}/healthz")).json()
        assert h["status"] == "ok"
        assert h["hosts"]["sshd-test"]["reachable"] is True
        assert isinstance(h["hosts"]["sshd-test"]["last_checked"], float)
        assert h["queue"] == {"waiting": 0, "running": 0}
        await rig.bot.store.close()  # the database goes away under the bot
        resp = await rig.http.get(f"{rig.url}/healthz")
        assert resp.status_code == 503
        assert resp.json()["store"] == "unusable"


@pytest.mark.slow
async def test_no_secret_in_the_logs_of_a_full_run(
    make_rig: RigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    env = {"SIM_ECHO_ENV": "DEPLOY_TOKEN", "DEPLOY_TOKEN": "dt-logged-0123456789"}
    secrets = (WEBHOOK_SECRET, GITEA_TOKEN, "dt-logged-0123456789")
    stream = io.StringIO()
    configure_logging("debug", Redactor(secrets))
    root = logging.getLogger()
    root.handlers[0].stream = stream  # type: ignore[attr-defined]
    # Positive control: a handler ahead of the redacting one sees each record as written.
    unfiltered = io.StringIO()
    root.handlers.insert(0, logging.StreamHandler(unfiltered))
    try:
        async with make_rig(sweep={"mattermost-lts": "R"}, env=env) as rig:
            rig.gitea.fail_next(2, status=500)
            await rig.comment(REPO, 4, "alice", "!redfix isolate mattermost-lts --runs 1")
            await rig.comment(REPO, 4, "alice", "!testme")
            await asyncio.wait_for(rig.bot.idle(), 60)
            # A module that logs a secret (in a Python repr, as DEBUG SQL parameters do):
            # the search below must see it unfiltered, and the filter must mask it.
            careless = dict(zip("abc", secrets, strict=True))
            logging.getLogger("bot.careless").warning("config %r", careless)
    finally:
        root.handlers.clear()
    text = stream.getvalue()
    assert "delivery" in text
    assert "verdict mattermost-lts" in text
    for secret in secrets:
        assert secret in unfiltered.getvalue()
        assert secret not in text
    assert "config {'a': '[redacted]', 'b': '[redacted]', 'c': '[redacted]'}" in text


def test_json_log_lines_carry_ids_and_are_redacted() -> None:
    stream = io.StringIO()
    configure_logging("info", Redactor(["hunter2hunter2"]), "json")
    root = logging.getLogger()
    root.handlers[0].stream = stream  # type: ignore[attr-defined]
    try:
        logging.getLogger("bot.test").info(
            "run %s saw password hunter2hunter2", "r1", extra={"run_id": "r1", "host": "ci"}
        )
    finally:
        root.handlers.clear()
    line = json.loads(stream.getvalue().strip())
    assert line["run_id"] == "r1"
    assert line["host"] == "ci"
    assert line["level"] == "info"
    assert "hunter2hunter2" not in line["message"]
