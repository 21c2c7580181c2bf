"""`redfix-bot demo` as a newcomer meets it: SIGTERM and SIGINT end it cleanly and take its
temporary folder with it, `/` lists every page, the results table links to the runs, and the
text it prints has no stray entities, repeated boilerplate or redundant counts."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.sshd import free_port

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@dataclass
class Demo:
    """A demo process; its stdout is read into `lines` as it comes."""

    proc: subprocess.Popen[str]
    url: str
    lines: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def stderr(self) -> str:
        return "".join(self.errors)

    @property
    def out(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout_s: float = 240) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.out:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"demo ended ({self.proc.returncode}) before {text!r}:\n{self.out[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {text!r} within {timeout_s}s:\n{self.out[-3000:]}\n"
                    f"stderr:\n{self.stderr[-3000:]}"
                )
            time.sleep(0.1)

    @property
    def folder(self) -> Path:
        m = re.search(r"^demo files \(removed when it ends\): (\S+)$", self.out, re.M)
        assert m, self.out[:2000]
        return Path(m.group(1))

    def stop(self, sig: signal.Signals) -> int:
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=60)
        self.readers_done()
        return rc

    readers: tuple[threading.Thread, ...] = ()

    def readers_done(self) -> None:
        for t in self.readers:
            t.join(timeout=10)


@contextmanager
def start_demo() -> Iterator[Demo]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDFIX_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "demo", "--port", str(port)],
        cwd=ROOT,
        env=env | {"PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    demo = Demo(proc, f"http://127.0.0.1:{port}")

    # Both pipes are drained as the demo writes: a full pipe would stall the demo itself.
    def drain(pipe: IO[str] | None, into: list[str]) -> None:
        assert pipe is not None
        for line in pipe:
            into.append(line)

    demo.readers = tuple(
        threading.Thread(target=drain, args=(pipe, into), daemon=True)
        for pipe, into in ((proc.stdout, demo.lines), (proc.stderr, demo.errors))
    )
    for t in demo.readers:
        t.start()
    try:
        yield demo
    finally:
        if proc.poll() is None:  # a failed test must not leave a demo running
            proc.send_signal(signal.SIGTERM)  # which, as tested here, also cleans up
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        demo.readers_done()


@pytest.fixture(scope="module")
def finished_demo() -> Iterator[Demo]:
    """One demo that played every scene and is still serving its pages."""
    with start_demo() as demo:
        demo.wait_for("redfix is still serving at")
        yield demo


def test_sigint_mid_scenes_exits_0_stops_its_runs_and_removes_the_folder() -> None:
    with start_demo() as demo:
        demo.wait_for("🏃")  # a run is going on the simulated host
        folder = demo.folder
        assert folder.is_dir()
        deadline = time.monotonic() + 60
        while not any((folder / "host" / "runs").glob("rf-*")):  # the harness made its run dir
            assert time.monotonic() < deadline, "no run started on the host"
            time.sleep(0.05)
        assert demo.stop(signal.SIGINT) == 0, demo.stderr[-3000:]
        assert "SIGINT: demo stopped" in demo.stderr
        assert "Traceback" not in demo.stderr
        assert not folder.exists()


def test_index_lists_every_page_and_every_run(finished_demo: Demo) -> None:
    with httpx.Client(base_url=finished_demo.url, timeout=10) as http:
        index = http.get("/")
        assert index.status_code == 200
        page = index.text
        for href in ('href="report"', 'href="api/report"', 'href="healthz"', 'href="metrics"'):
            assert href in page
        run_ids = set(re.findall(r"rf-[a-z0-9-]+-\d{8}T\d{6}-[0-9a-f]{6}", finished_demo.out))
        assert len(run_ids) >= 15, run_ids  # every scene's runs, as the comments name them
        for rid in run_ids:
            assert f'href="runs/{rid}"' in page, rid
            assert f'href="runs/{rid}/log"' in page, rid
        # The links lead somewhere: each run's page and log answer.
        some = sorted(run_ids)[0]
        assert http.get(f"/runs/{some}").status_code == 200
        log = http.get(f"/runs/{some}/log")
        assert log.status_code == 200
        assert log.text


def test_results_table_links_each_row_to_its_runs_and_logs(finished_demo: Demo) -> None:
    with httpx.Client(base_url=finished_demo.url, timeout=10) as http:
        page = http.get("/report").text
    rows = re.findall(r"<tr>(.*?)</tr>", page)[1:]  # after the header row
    assert len(rows) == 5, rows
    # Isolated runs per recipe (--runs), and mumble's --load 1: the run judged under load
    # and the run beside it that made the load.
    counts = {"mumble": 5, "mattermost-lts": 3, "uptime-kuma": 4, "discourse": 2, "keycloak": 2}
    for row in rows:
        recipe = re.search(r"<code>([a-z0-9-]+)</code>", row)
        assert recipe, row
        links = re.findall(rf'href="runs/(rf-{recipe.group(1)}-[^"/]+)"', row)
        logs = re.findall(rf'href="runs/(rf-{recipe.group(1)}-[^"/]+)/log"', row)
        assert len(links) == counts[recipe.group(1)], row
        assert logs == links
    assert ">under load</a>" in page
    assert ">beside it, the load</a>" in page


def comment(out: str, title: str) -> str:
    """The text of the first comment printed under `--- {title} ---`."""
    start = out.index(f"--- {title} ---\n")
    end = out.find("\n--- ", start + 1)
    end = out.find("\n=== ", start) if end == -1 else end
    return out[start:end]


def test_the_printed_comments_read_cleanly(finished_demo: Demo) -> None:
    out = finished_demo.out
    # No HTML entity shows up in the terminal (the advice names warm-canon-<recipe>...).
    assert "warm-canon-<recipe>.ci.example" in out
    assert not re.search(r"&(lt|gt|amp|quot|#\d+);", out), re.findall(r".{30}&\w+;.{10}", out)
    # The busy-probe sentence is said once per table, not once per row.
    mumble = comment(out, "recipe-maintainers/mumble#4")
    assert "Each run alone: no busy probe configured; none of redfix's runs on the host." in (
        mumble
    )
    assert mumble.count("no busy probe configured") == 1
    # One count where one says it all.
    assert "3/3 green alone: failure rate alone < 64 % (95 %)" in mumble
    assert "0/3 red alone" not in out
    assert "0/3 green alone" not in out
    # The !testme comment has no bare "green" line under the headline that says green.
    testme = comment(out, "recipe-maintainers/custom-html#12")
    assert "— green" in testme  # positive control: the headline is there
    assert [line for line in testme.splitlines() if line.strip() == "green"] == []
    # Nor are the hidden markers printed as text.
    assert "<!-- redfix:" not in out


def test_sigterm_after_the_scenes_exits_0_and_removes_the_folder(finished_demo: Demo) -> None:
    """Last in the file: it ends the module's demo the page tests above looked at."""
    folder = finished_demo.folder
    assert folder.is_dir()  # positive control: the folder is there while it runs
    assert (folder / "data" / "redfix.sqlite3").is_file()
    assert finished_demo.stop(signal.SIGTERM) == 0, finished_demo.stderr[-3000:]
    assert "SIGTERM: demo stopped; its temporary folder is removed." in finished_demo.stderr
    assert "Traceback" not in finished_demo.stderr
    assert not folder.exists()
