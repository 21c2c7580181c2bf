"""Shutdown stops owned tasks for sure, even ones that drop a cancellation (bot/tasks.py)."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time

import pytest

from bot.adapters.ssh.runner import SshRunner
from bot.core.tasks import stop_tasks
from tests.conftest import RigFactory


def _loop_on_wait_for(event: asyncio.Event, rounds: list[int]) -> asyncio.Task[None]:
    """The shape of a background loop as the bot wrote them before: wake-or-timeout via
    `asyncio.wait_for`. Python 3.11's wait_for drops a cancel that arrives in the same loop
    iteration as the awaited thing finishes."""

    async def loop() -> None:
        while True:
            event.clear()
            await asyncio.wait_for(event.wait(), 10)  # the shape under test
            rounds.append(1)

    return asyncio.create_task(loop(), name="wait-for-loop")


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="wait_for was fixed in 3.12")
async def test_the_python_311_race_is_real_here() -> None:
    """Not vacuous: on this Python one cancel really is lost, and the loop goes on."""
    event, rounds = asyncio.Event(), list[int]()
    task = _loop_on_wait_for(event, rounds)
    await asyncio.sleep(0.01)
    event.set()
    task.cancel()  # same loop iteration as the wake-up
    await asyncio.sleep(0.1)
    assert not task.done()
    assert rounds == [1]
    assert await stop_tasks([task], within_s=2) == set()


async def test_a_cancel_dropped_by_wait_for_does_not_hang_shutdown() -> None:
    event, rounds = asyncio.Event(), list[int]()
    task = _loop_on_wait_for(event, rounds)
    await asyncio.sleep(0.01)
    event.set()
    left = await stop_tasks([task], within_s=5)
    assert left == set()
    assert task.cancelled()


async def test_a_task_that_swallows_cancels_is_cancelled_again_until_it_stops() -> None:
    swallowed: list[int] = []

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if len(swallowed) == 2:
                    raise
                swallowed.append(1)  # as a buggy library would: carry on

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    assert await stop_tasks([task], within_s=5) == set()
    assert len(swallowed) == 2
    assert task.cancelled()


async def test_a_task_that_never_stops_is_named_and_left_behind_at_the_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()

    async def immortal() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(immortal(), name="immortal-loop")
    ok = asyncio.create_task(asyncio.sleep(10), name="well-behaved")
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="bot.core.tasks"):
        left = await stop_tasks([task, ok], within_s=0.6, what="shutdown")
    assert left == {task}
    assert ok.cancelled()
    (record,) = [r for r in caplog.records if "immortal-loop" in r.getMessage()]
    assert "did not stop within 0.6s" in record.getMessage()
    assert "immortal" in record.getMessage()  # its stack says where it was stuck
    release.set()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_failed_and_finished_tasks_are_consumed_without_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def boom() -> None:
        raise RuntimeError("failed earlier")

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        failed = asyncio.create_task(boom())
        finished = asyncio.create_task(asyncio.sleep(0))
        await asyncio.sleep(0.01)
        assert await stop_tasks([failed, finished], within_s=1) == set()
        del failed, finished
        gc.collect()  # an unread task exception is reported when the task is collected
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


@pytest.mark.slow
async def test_the_bot_shuts_down_when_its_host_check_drops_the_cancel(
    make_rig: RigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CI hang, at the bot's level: shutdown cancels the host-check loop while asyncssh's
    connect (a wait_for inside) finishes, the cancel is lost and the loop goes on. The seam
    is the check itself, made to drop one cancel the way that race does."""
    dropped: list[int] = []
    checking = asyncio.Event()

    async def check_that_loses_a_cancel(self: SshRunner) -> bool:
        checking.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            dropped.append(1)  # the race: the connect "finished", the cancel is gone
        return True

    monkeypatch.setattr(SshRunner, "check", check_that_loses_a_cancel)
    rig = make_rig()
    await rig.__aenter__()  # entered by hand: the exit is what is timed
    await asyncio.wait_for(checking.wait(), 10)
    t0 = time.monotonic()
    async with asyncio.timeout(30):  # before the fix: forever (the loop sleeps, then checks)
        await rig.__aexit__(None, None, None)
    assert dropped == [1]
    assert time.monotonic() - t0 < 10
