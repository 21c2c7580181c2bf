"""Benchmark 1, webhook ingest: signed deliveries into the real webhook app vs a bare 202."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.common import Report, Settings, Target, fmt, ms, percentile
from bot.adapters.store import Store
from bot.sim import deliveries

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-webhook-secret-0123"  # noqa: S105 - a made-up secret on loopback
REPO = "recipe-maintainers/mumble"
LEVELS = (1, 8, 32, 64)
PACED_RATE = 200.0
START_TIMEOUT_S = 30.0
# A delivery already in the store before the aged run starts, far from the client's comment ids.
AGED_ID_BASE = 50_000_000


@dataclass(frozen=True)
class Sizes:
    per_level: int  # deliveries per concurrency level (bounded by per_level_s too)
    per_level_s: float
    paced: int  # deliveries in the paced run, sent at PACED_RATE
    aged_rows: int  # deliveries already stored before the aged run
    aged_level: int


FULL = Sizes(per_level=3000, per_level_s=8.0, paced=2000, aged_rows=20_000, aged_level=8)
QUICK = Sizes(per_level=150, per_level_s=3.0, paced=100, aged_rows=1000, aged_level=8)

Delivery = tuple[bytes, dict[str, str]]


class Comments:
    """Signed issue_comment deliveries, each a new comment by an allowed user (all accepted)."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    def take(self, n: int) -> list[Delivery]:
        # Built before a timed loop: signing is Gitea's work, not the bot's.
        out = []
        for _ in range(n):
            cid = next(self._ids)
            body = deliveries.issue_comment(REPO, 1 + cid % 40, cid, "alice", "!redfix help")
            out.append((body, deliveries.headers(body, SECRET)))
        return out


@dataclass
class Load:
    """Latencies (s) and statuses of one batch of requests, and how long it took."""

    latencies: list[float]
    statuses: Counter[int]
    elapsed: float

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed

    def pct(self, q: float) -> float:
        return ms(percentile(self.latencies, q))


async def _post(session: aiohttp.ClientSession, url: str, item: Delivery) -> int:
    body, headers = item
    try:
        async with session.post(url, data=body, headers=headers) as resp:
            await resp.read()
            return resp.status
    except aiohttp.ClientError:
        return 0  # counted as a failure: neither 202 nor stored


async def closed_loop(
    session: aiohttp.ClientSession,
    url: str,
    items: Iterable[Delivery],
    concurrency: int,
    limit_s: float,
) -> Load:
    """`concurrency` requests in flight until `items` or `limit_s` runs out."""
    todo: Iterator[Delivery] = iter(items)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    deadline = time.perf_counter() + limit_s

    async def worker() -> None:
        # One shared iterator: each delivery is sent exactly once, whichever worker is free.
        for item in todo:
            t0 = time.perf_counter()
            statuses[await _post(session, url, item)] += 1
            latencies.append(time.perf_counter() - t0)
            if time.perf_counter() > deadline:
                return

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Load(latencies, statuses, time.perf_counter() - start)


async def paced(
    session: aiohttp.ClientSession, url: str, items: list[Delivery], rate: float
) -> Load:
    """Open loop at a fixed rate. Latency counts from when a request was due, not when it went
    out, so a stalled server shows up in the figure instead of slowing the sender."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()

    async def one(item: Delivery, due: float) -> None:
        statuses[await _post(session, url, item)] += 1
        latencies.append(time.perf_counter() - due)

    start = time.perf_counter()
    tasks = []
    for i, item in enumerate(items):
        due = start + i / rate
        if (wait := due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(one(item, due)))
    await asyncio.gather(*tasks)
    return Load(latencies, statuses, time.perf_counter() - start)


@asynccontextmanager
async def server(kind: str, *args: str, log: Path) -> AsyncIterator[str]:
    """A `bench.serve` child process; yields its webhook URL, stops it on exit."""
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.serve",
            kind,
            *args,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
        )
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT_S)
        except TimeoutError:
            line = b""
        if not line.strip().isdigit():
            tail = (await asyncio.to_thread(log.read_text, errors="replace"))[-2000:]
            raise RuntimeError(f"bench.serve {kind} did not start:\n{tail}")
        yield f"http://127.0.0.1:{int(line)}/webhooks/gitea"
    finally:
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), START_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@contextmanager
def sqlite(db: Path) -> Iterator[sqlite3.Connection]:
    """A plain connection beside the bot's, committed on success and always closed."""
    con = sqlite3.connect(db)
    try:
        with con:
            yield con
    finally:
        con.close()


def count_deliveries(db: Path) -> int:
    with sqlite(db) as con:
        return int(con.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0])


async def prefill(data_dir: Path, rows: int) -> None:
    """A store with the real schema that has seen `rows` commands already (0: a fresh one)."""
    store = await Store.open(data_dir / "redfix.sqlite3")  # the real schema, migrated
    await store.close()
    body = deliveries.issue_comment(REPO, 4, AGED_ID_BASE, "alice", "!redfix help")
    now = time.time()
    with sqlite(data_dir / "redfix.sqlite3") as con:
        con.executemany(
            "INSERT INTO deliveries (delivery_id, event, received_at, dedupe_key, state, body) "
            "VALUES (?, 'issue_comment', ?, ?, 'done', ?)",
            (
                (f"aged-{i}", now, f"gitea:{REPO}:{AGED_ID_BASE + i}:created", body)
                for i in range(rows)
            ),
        )


def _session(limit: int) -> aiohttp.ClientSession:
    # Keep-alive connections, at most `limit` of them: reused across requests, like Gitea's.
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit))


async def _level(url: str, comments: Comments, concurrency: int, sizes: Sizes) -> list[Load]:
    """Connections opened (a warm-up load), then the timed load: [warm-up, timed]."""
    async with _session(concurrency) as session:
        warm = await closed_loop(session, url, comments.take(concurrency * 2), concurrency, 60)
        batch = comments.take(sizes.per_level)
        return [warm, await closed_loop(session, url, batch, concurrency, sizes.per_level_s)]


@dataclass
class Stored:
    """What one bot server was sent and what its store holds afterwards."""

    loads: list[Load]
    rows: int  # new rows in deliveries

    @property
    def timed(self) -> Load:
        return self.loads[-1]

    @property
    def accepted(self) -> int:
        return sum(load.statuses[202] for load in self.loads)

    @property
    def refused(self) -> int:
        return sum(n for load in self.loads for s, n in load.statuses.items() if s != 202)


async def bot_run(
    tmp: Path,
    name: str,
    concurrency: int | None,
    sizes: Sizes,
    *,
    aged: bool = False,
    indexed: bool = False,
) -> Stored:
    """A bot server on a store of its own: fresh, or aged by `sizes.aged_rows` deliveries, and
    `indexed` on dedupe_key if asked. `concurrency` None means the paced run."""
    data_dir = tmp / name
    data_dir.mkdir()
    db = data_dir / "redfix.sqlite3"
    before = 0
    await prefill(data_dir, sizes.aged_rows if aged else 0)
    if aged:
        before = sizes.aged_rows
    if indexed:
        index_dedupe_key(db)
    comments = Comments()
    async with server("bot", str(data_dir), SECRET, log=tmp / f"{name}.log") as url:
        if concurrency is not None:
            loads = await _level(url, comments, concurrency, sizes)
        else:
            async with _session(64) as session:
                loads = [await paced(session, url, comments.take(sizes.paced), PACED_RATE)]
    return Stored(loads, count_deliveries(db) - before)


def index_dedupe_key(db: Path) -> None:
    """The index a schema migration could add; here only to show what it changes."""
    with sqlite(db) as con:
        con.execute("CREATE INDEX IF NOT EXISTS deliveries_dedupe ON deliveries (dedupe_key)")


async def run(settings: Settings) -> Report:
    sizes = QUICK if settings.quick else FULL
    report = Report("ingest", "signed issue_comment deliveries → the webhook app → 202")
    tmp = settings.tmp
    bot: dict[int, Stored] = {}
    bare: dict[int, Load] = {}
    async with server("bare", log=tmp / "bare.log") as bare_url:
        for c in LEVELS:
            # Alternating keeps background load on this shared machine from favouring one side.
            bare[c] = (await _level(bare_url, Comments(), c, sizes))[-1]
            # A fresh store per level: the deliveries table grows, and that is measured apart.
            bot[c] = await bot_run(tmp, f"c{c}", c, sizes)
    paced_run = await bot_run(tmp, "paced", None, sizes)
    aged_run = await bot_run(tmp, "aged", sizes.aged_level, sizes, aged=True)
    # Diagnostic: the same aged store with an index on the column every accept searches.
    indexed_run = await bot_run(tmp, "indexed", sizes.aged_level, sizes, aged=True, indexed=True)
    paced_indexed = await bot_run(tmp, "paced-indexed", None, sizes, indexed=True)

    report.lines.append(
        "concurrency  bot deliveries/s  p50 ms  p99 ms  |  bare 202/s  p50 ms  p99 ms  |  ratio"
    )
    ratios = {}
    for c in LEVELS:
        b, r = bot[c].timed, bare[c]
        ratios[c] = b.rate / r.rate
        report.lines.append(
            f"{c:>11}  {fmt(b.rate):>16}  {fmt(b.pct(50)):>6}  {fmt(b.pct(99)):>6}  |  "
            f"{fmt(r.rate):>10}  {fmt(r.pct(50)):>6}  {fmt(r.pct(99)):>6}  |  "
            f"{ratios[c]:.2f}×"
        )
        report.figures |= {
            f"bot_rate_c{c}": b.rate,
            f"bot_p50_ms_c{c}": b.pct(50),
            f"bot_p99_ms_c{c}": b.pct(99),
            f"bare_rate_c{c}": r.rate,
            f"bare_p50_ms_c{c}": r.pct(50),
            f"bare_p99_ms_c{c}": r.pct(99),
            f"ratio_c{c}": ratios[c],
        }
    p, a, i, pi = paced_run.timed, aged_run.timed, indexed_run.timed, paced_indexed.timed
    fresh_at_aged_level = bot[sizes.aged_level].timed.rate
    report.lines += [
        f"(each level on a fresh store, {sizes.per_level:,} deliveries or {sizes.per_level_s:g} s "
        f"after a warm-up; at most {max(s.rows for s in bot.values()):,} rows by the end)",
        f"paced {PACED_RATE:g}/s on a fresh store: {len(p.latencies)} deliveries, "
        f"{fmt(p.rate)}/s achieved, p50 {fmt(p.pct(50))} ms, p99 {fmt(p.pct(99))} ms, "
        f"max {fmt(p.pct(100))} ms (latency counted from when each was due)",
        f"aged store ({sizes.aged_rows:,} deliveries already stored), concurrency "
        f"{sizes.aged_level}: {fmt(a.rate)}/s, p50 {fmt(a.pct(50))} ms, p99 {fmt(a.pct(99))} ms "
        f"({a.rate / fresh_at_aged_level:.2f}× the fresh store)",
        f"diagnostic: the aged store with an index on deliveries(dedupe_key) added: "
        f"{fmt(i.rate)}/s, p50 {fmt(i.pct(50))} ms, p99 {fmt(i.pct(99))} ms "
        f"({i.rate / fresh_at_aged_level:.2f}× the fresh store)",
        f"diagnostic: paced {PACED_RATE:g}/s on a fresh store with that index: "
        f"{fmt(pi.rate)}/s achieved, p50 {fmt(pi.pct(50))} ms, p99 {fmt(pi.pct(99))} ms",
    ]
    report.figures |= {
        "paced_rate": p.rate,
        "paced_p50_ms": p.pct(50),
        "paced_p99_ms": p.pct(99),
        "aged_rate": a.rate,
        "aged_p99_ms": a.pct(99),
        "indexed_rate": i.rate,
        "paced_indexed_p99_ms": pi.pct(99),
    }
    runs = [*bot.values(), paced_run, aged_run, indexed_run, paced_indexed]
    accepted = sum(r.accepted for r in runs)
    stored = sum(r.rows for r in runs)
    refused = sum(r.refused for r in runs)
    report.lines.append(
        f"lost: {accepted - stored} ({stored:,} new rows in deliveries over {len(runs)} stores, "
        f"{accepted:,} deliveries answered 202, {refused} answered otherwise)"
    )
    worst = min(ratios, key=lambda c: ratios[c])
    report.targets.append(
        Target(f"throughput vs bare handler, worst (c={worst})", ratios[worst], 0.5, "×", True)
    )
    report.targets.append(
        Target(f"p99 at {PACED_RATE:g} deliveries/s", p.pct(99), 20, " ms", False)
    )
    # Each delivery is a new comment by an allowed user, so anything but 202 is a failure too.
    report.checks["every delivery answered 202"] = refused == 0
    report.checks["zero lost: rows in deliveries == deliveries accepted, per store"] = all(
        r.rows == r.accepted for r in runs
    )
    report.notes.append(
        "client (aiohttp, keep-alive) in this process, each server in a process of its own, "
        "so they do not share an event loop; the bot's server logs at INFO as `serve` does"
    )
    return report
