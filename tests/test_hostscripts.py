"""The host-side scripts (bot/hostscripts.py) run directly under the local /bin/sh: FOLLOW
copies exactly the bytes from an offset, with GNU dd and with the `tail | head` fallback."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from bot.adapters.ssh.hostscripts import FOLLOW, LAUNCH, STATUS, SUPERVISOR


def _ended_run(tmp_path: Path, content: bytes) -> Path:
    """A state dir of a run that has ended: exit code written, supervisor and group gone."""
    d = tmp_path / "rf-x"
    d.mkdir()
    (d / "out.log").write_bytes(content)
    (d / "supervisor").write_text("999999999\n")  # no such process
    (d / "pid").write_text("999999999\n")
    (d / "exit").write_text("0\n")
    return d


def _follow(d: Path, offset: int, env: dict[str, str] | None = None) -> bytes:
    done = subprocess.run(
        ["/bin/sh", "-c", FOLLOW, "redfix", str(d), str(offset)],
        capture_output=True,
        timeout=30,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("offset", [0, 1, 4095, 3_000_000, 3_145_728])
@pytest.mark.parametrize("copier", ["dd", "tail|head"])
def test_follow_copies_exactly_from_the_offset(tmp_path: Path, offset: int, copier: str) -> None:
    content = os.urandom(3 * 1024 * 1024)  # 3 MiB: more than one of dd's 1 MiB blocks
    d = _ended_run(tmp_path, content)
    env = None
    if copier == "tail|head":
        # A dd without byte offsets (as BusyBox's or BSD's): FOLLOW must fall back.
        fake = tmp_path / "bin"
        fake.mkdir()
        (fake / "dd").write_text("#!/bin/sh\necho 'dd: unknown iflag' >&2\nexit 1\n")
        (fake / "dd").chmod(0o755)
        env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    assert _follow(d, offset, env) == content[offset:]


def _sh(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", "-c", script, "redfix", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_status_tells_a_launch_under_way_from_one_that_never_started(tmp_path: Path) -> None:
    d = tmp_path / "rf-y"
    assert "state=none" in _sh(STATUS, str(d)).stdout  # no state dir at all
    d.mkdir()  # LAUNCH holds its lock, no `started` yet
    assert "state=launching" in _sh(STATUS, str(d)).stdout
    (d / "started").write_text(f"{int(time.time())}\n")
    assert "state=launching" in _sh(STATUS, str(d)).stdout
    (d / "started").write_text(f"{int(time.time()) - 60}\n")  # a launch that died long ago
    assert "state=none" in _sh(STATUS, str(d)).stdout
    (d / "pid").write_text("999999999\n")  # control: with a pid it is a run, here gone
    assert "state=gone" in _sh(STATUS, str(d)).stdout


def test_a_second_launch_of_one_run_is_refused_by_the_lock(tmp_path: Path) -> None:
    d = tmp_path / "state" / "rf-z"
    work = tmp_path / "work"
    work.mkdir()
    args = (str(work), "true", str(d), "10", "1", SUPERVISOR)
    first = _sh(LAUNCH, *args)
    assert first.returncode == 0, first.stdout
    again = _sh(LAUNCH, *args)
    assert again.returncode == 125
    assert "already holds a started run" in again.stdout
    (d / "pid").unlink()  # the first launch's lock is there but not (yet) its pid
    racing = _sh(LAUNCH, *args)
    assert racing.returncode == 125
    assert "a launch of this run is already under way" in racing.stdout
