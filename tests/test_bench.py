"""The benchmark suite in quick mode: each benchmark runs and yields numbers, at no set speed."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from bench import ack, evidence, ingest, redact, schedule, stream, sweep
from bench.__main__ import main
from bench.common import Report, Settings
from tests.sshd import Sshd

pytestmark = pytest.mark.slow


def assert_measured(report: Report) -> None:
    """Numbers came out (finite, positive) and nothing was lost; how fast is not asserted."""
    assert report.figures, f"{report.name} measured nothing"
    odd = {k: v for k, v in report.figures.items() if not (math.isfinite(v) and v > 0)}
    assert not odd, f"{report.name}: figures not finite and positive: {odd}"
    assert report.targets, f"{report.name} judged no target"
    failed = [what for what, ok in report.checks.items() if not ok]
    assert not failed, f"{report.name}: checks failed: {failed}\n{report.render()}"
    assert report.render().startswith(f"== {report.name}:")


@pytest.mark.parametrize(
    "bench",
    [ingest.run, ack.run, schedule.run, evidence.run, redact.run, sweep.run],
    ids=["ingest", "ack", "schedule", "evidence", "redact", "sweep"],
)
async def test_quick_benchmark_measures(
    bench: Callable[[Settings], Awaitable[Report]], tmp_path: Path
) -> None:
    assert_measured(await bench(Settings(quick=True, tmp=tmp_path)))


async def test_quick_stream_from_the_test_sshd(sshd: Sshd, tmp_path: Path) -> None:
    report = await stream.run(Settings(quick=True, tmp=tmp_path), sshd=sshd)
    assert_measured(report)
    assert report.checks["every byte reached the run log"]


def test_cli_prints_the_machine_and_a_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "bench.json"
    assert main(["--quick", "--only", "schedule", "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    for fact in ("nproc:", "cpu:", "python:", "date:", "== schedule:", "targets met:"):
        assert fact in printed
    assert '"schedule"' in out_json.read_text()
