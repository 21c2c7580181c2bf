"""The composition root: the only place that names concrete classes and wires them together."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass

from aiohttp import web

import handlers
from bot.adapters.config import Config, ConfigError
from bot.adapters.gitea.client import GiteaClient
from bot.adapters.gitea.forge import GiteaForge
from bot.adapters.gitea.poll import Poller
from bot.adapters.ingress import Ingress
from bot.adapters.matrix.client import MatrixBot
from bot.adapters.metrics import Metrics, Snapshot
from bot.adapters.outbox import Outbox
from bot.adapters.preflight import config_problems, host_key_problems
from bot.adapters.ssh.runner import SshRunner
from bot.adapters.store import Store
from bot.adapters.web.server import make_web_app, start_server
from bot.core.access import Access
from bot.core.dispatch import Dispatcher
from bot.core.isolation import Isolation, IsolationSettings
from bot.core.jobs import Jobs
from bot.core.ports import HostRunner
from bot.core.scheduler import HostPool
from bot.core.sweep import Sweeps, SweepSettings
from bot.core.sweepboard import SweepBoard
from bot.core.sweepjob import SweepRunner
from bot.core.tasks import stop_tasks
from bot.core.verify import Verifier, VerifySettings
from bot.core.watcher import SweepWatcher
from bot.model import HandlerSettings
from bot.render.redact import Redactor
from bot.verdict.rules import RuleSet

log = logging.getLogger(__name__)

# At shutdown, how long the outbox may take to finish the delivery pass it is in.
OUTBOX_STOP_S = 10.0
TASK_STOP_S = 5.0  # the loops other than the outbox only wait or read


def load_rules(config: Config) -> RuleSet:
    """The packaged signature rules plus the operator's file; a rule in the file replaces a
    packaged rule of the same id. RulesError lists every problem, with rule ids."""
    base = RuleSet.default() if config.classify.default_signatures else RuleSet.empty()
    if config.classify.signatures is None:
        return base
    extra = RuleSet.load(config.classify.signatures)
    mine = {r.id for r in extra.rules}
    kept = [r for r in base.rules if r.id not in mine]
    return RuleSet([*kept, *extra.rules], f"{base.source} + {extra.source}")


@dataclass
class Bot:
    """A wired bot: its parts, its web app, and its owned background tasks."""

    config: Config
    store: Store
    gitea: GiteaClient
    outbox: Outbox
    dispatcher: Dispatcher
    jobs: Jobs
    runners: dict[str, SshRunner]
    web_app: web.Application
    tasks: list[asyncio.Task[None]]
    sweeps: Sweeps
    matrix: MatrixBot | None = None
    watcher: SweepWatcher | None = None

    async def idle(self) -> None:
        """Wait until nothing is pending: no delivery, job or outbox item (tests, demo)."""
        while True:
            await self.dispatcher.process_pending()
            await self.jobs.drain()
            await self.sweeps.drain()
            await self.outbox.flush_due()
            if (
                not self.jobs.active
                and not self.sweeps.active
                and not await self.store.pending_deliveries()
                and await self.store.outbox_backlog() == 0
            ):
                return
            await asyncio.sleep(0.05)


async def examine_host(name: str, runner: SshRunner, pool: HostPool) -> None:
    """The host doctor on one host; an unfit host is given no new runs until it is fit."""
    try:
        found = await runner.diagnose()
    except Exception:  # the doctor must never take the bot down; the host stays as it was
        log.exception("host doctor on %s failed", name)
        return
    pool.set_fitness(name, found.blocking)
    if found.ok:
        log.info("host %s is fit (%d checks)", name, len(found.checks))
    else:
        log.warning("host %s is not fit, no runs go there: %s", name, found.summary())


async def check_hosts(runners: dict[str, SshRunner], pool: HostPool, interval_s: float) -> None:
    """The host doctor on every host at start, on every reconnect and, while a host is unfit,
    at every check; between, keep each host's reachability fresh for /healthz (and the SSH
    error count for /metrics)."""
    up: dict[str, bool] = {}
    while True:
        for name, runner in runners.items():
            reachable = await runner.check()
            if not reachable:
                log.warning("host %s unreachable: %s", name, runner.last_error)
            elif not up.get(name, False) or not (runner.diagnosis and runner.diagnosis.ok):
                # The first look, back after being away, or unfit last time (an operator may
                # have fixed it since): the doctor again.
                await examine_host(name, runner, pool)
            up[name] = reachable
        if interval_s <= 0:
            return  # checked once at start; no periodic checks configured
        await asyncio.sleep(interval_s)


def handler_settings(config: Config) -> HandlerSettings:
    """The slice of the configuration the command registry's decisions may read."""
    return HandlerSettings(
        isolation_runs=config.isolation.runs,
        isolation_max_runs=config.isolation.max_runs,
        isolation_load=config.isolation.load,
        load_recipes=config.isolation.load_recipes,
        recipes=tuple(config.gitea.recipes.items()),
        sweep_window_s=config.sweep.window_s,
        sweep_runs=config.sweep.runs,
        sweep_load=config.sweep.load,
    )


def sweep_runs(config: Config) -> int:
    """Runs per failure of a watched sweep: `[sweep] runs`, the budget when auto, else
    `[isolation] runs`."""
    chosen = config.sweep.runs
    if chosen == "auto":
        return config.isolation.max_runs
    return chosen if isinstance(chosen, int) else config.isolation.runs


def access_rule(config: Config) -> Access:
    """Who may command, from [gitea] and [matrix]."""
    m = config.matrix
    return Access(
        config.gitea.allowed_orgs,
        matrix_users=m.allowed_users if m else (),
        min_power_level=m.min_power_level if m else None,
        matrix_gitea_logins=m.gitea_logins if m else {},
        matrix_targets=(m.target_repos or config.gitea.repos) if m else (),
    )


def figures(
    store: Store, pool: HostPool, runners: dict[str, SshRunner]
) -> Callable[[], Awaitable[Snapshot]]:
    """What /metrics reports, read at scrape time (the store's figures survive restarts)."""

    async def snapshot() -> Snapshot:
        t = await store.tallies()
        return Snapshot(
            commands=t.commands,
            runs=t.runs,
            verdicts=t.verdicts,
            verdict_seconds=t.verdict_seconds,
            outbox=asdict(t.outbox),
            queue_depth=pool.waiting,
            queue_waits=list(pool.waits),
            ssh_errors={name: r.connect_errors for name, r in runners.items()},
        )

    return snapshot


def health_report(
    config: Config, runners: dict[str, SshRunner], pool: HostPool, matrix: MatrixBot | None
) -> Callable[[], dict[str, object]]:
    """What /healthz reports beside the store's own check."""

    def health() -> dict[str, object]:
        # What keeps the bot from working, each with its reason: /healthz is `degraded` (503)
        # while any holds. A host not checked yet (reachable: null) is not counted against it.
        problems: list[str] = []
        hosts: dict[str, object] = {}
        for h in config.hosts:
            r = runners[h.name]
            key_problems = host_key_problems(h)
            problems += [f"host {p}" for p in key_problems]
            if r.last_error:
                problems.append(r.last_error)
            found = r.diagnosis
            if found is not None and not found.ok:
                problems.append(f"host {h.name} is not fit: {found.summary()}")
            hosts[h.name] = {
                "reachable": None if r.last_checked is None else not r.last_error,
                "last_checked": r.last_checked,
                "error": r.last_error,
                "keys": "ok" if not key_problems else "; ".join(key_problems),
                # The host doctor's last word (null: not examined yet).
                "doctor": None
                if found is None
                else {
                    "fit": found.ok,
                    "at": found.at,
                    "checks": [c.to_json() for c in found.checks],
                },
            }
        out: dict[str, object] = {
            "hosts": hosts,
            "queue": {"waiting": pool.waiting, "running": pool.running},
            "problems": list(dict.fromkeys(problems)),
        }
        if matrix is not None:
            last = matrix.last_sync
            out["matrix"] = {
                "last_sync": last,
                "sync_age_s": None if last is None else round(time.time() - last, 3),
            }
        return out

    return health


def work(
    config: Config,
    store: Store,
    outbox: Outbox,
    forge: GiteaForge,
    pool: HostPool,
    runners: dict[str, SshRunner],
) -> tuple[Jobs, Sweeps]:
    """The core's workers — isolations, sweeps, verifications and the fix loop — and the
    owner of their jobs."""
    host_runners: dict[str, HostRunner] = dict(runners)
    url = config.server.public_url
    board = SweepBoard(store, outbox, public_url=url, gitea_url=config.gitea.url)
    isolation = Isolation(
        store,
        outbox,
        pool,
        host_runners,
        load_rules(config),
        IsolationSettings(
            public_url=config.server.public_url,
            reference_scan_limit=config.isolation.reference_scan_limit,
            busy_wait_s=config.harness.busy_wait_s,
            busy_poll_s=config.harness.busy_poll_s,
            load_rounds=config.isolation.load_rounds,
            profile=config.harness.harness_profile(),
        ),
    )
    verifier = Verifier(
        store,
        outbox,
        forge,
        pool,
        host_runners,
        board,
        VerifySettings(
            public_url=config.server.public_url,
            gitea_url=config.gitea.url,
            test_paths=config.harness.test_paths,
            verify_on_push=config.gitea.verify_on_push,
            fix_repeat_flaky=config.gitea.fix_repeat,
        ),
    )
    sw = config.sweep
    runner = SweepRunner(
        store, isolation, board, hosts=len(runners), load_recipes=config.isolation.load_recipes
    )
    sweeps = Sweeps(
        store,
        outbox,
        forge,
        host_runners,
        runner,
        board,
        SweepSettings(
            public_url=url,
            scan_limit=sw.scan_limit,
            ignore_runs=sw.ignore_runs,
            tracking_repo=sw.tracking_repo,
            runs=config.isolation.max_runs
            if sw.runs == "auto"
            else sw.runs or config.isolation.runs,
            auto=sw.runs == "auto",
            load=sw.load,
            load_recipes=config.isolation.load_recipes,
            author=config.gitea.bot_login,
        ),
    )
    return Jobs(store, outbox, isolation, verifier, sweeps), sweeps


async def resume(store: Store, pool: HostPool) -> None:
    """Hand back what a previous process started and did not finish, before anything new."""
    # Work a previous process started and did not finish goes back to the dispatcher first,
    # in arrival order; each job finds its runs in the store and adopts those still going.
    resumed = await store.requeue_unfinished()
    if resumed:
        log.info("resuming %d unfinished command(s) from before the restart", resumed)
    # Runs still going on their hosts keep their slots: nothing new is placed beside an
    # isolation, or over a host's capacity, before the resumed job adopts its run.
    for run in await store.active_runs():
        if run.state == "running" and pool.reserve(
            f"cmd-{run.command_id}",
            run.host,
            run.recipe,
            exclusive=run.kind == "isolation",
        ):
            log.info("run %s on %s: slot kept for its resumed job", run.run_id, run.host)


def background(
    config: Config,
    dispatcher: Dispatcher,
    outbox_task: asyncio.Task[None],
    gitea: GiteaClient,
    store: Store,
    matrix: MatrixBot | None,
    runners: dict[str, SshRunner],
    pool: HostPool,
    watcher: SweepWatcher | None = None,
) -> list[asyncio.Task[None]]:
    """The owned background loops: dispatcher, outbox, poll sweep, Matrix sync, host checks,
    the sweep watcher."""
    tasks = [asyncio.create_task(dispatcher.run(), name="dispatcher"), outbox_task]
    if watcher is not None:
        tasks.append(asyncio.create_task(watcher.run(), name="sweep-watcher"))
    if config.gitea.repos and config.gitea.poll_interval > 0:
        bot_login = config.gitea.bot_login
        poller = Poller(gitea, store, config.gitea.repos, bot_login, dispatcher.wake)
        tasks.append(asyncio.create_task(poller.run(config.gitea.poll_interval), name="poll"))
    if matrix is not None:
        tasks.append(asyncio.create_task(matrix.run(), name="matrix"))
    tasks.append(
        asyncio.create_task(
            check_hosts(runners, pool, config.server.health_interval_s), name="host-checks"
        )
    )
    return tasks


def gitea_client(config: Config, transport: object | None = None) -> GiteaClient:
    """The Gitea API client with the bot's token (`transport`: tests and benchmarks)."""
    token = config.gitea.token.get_secret_value() if config.gitea.token else None
    return GiteaClient(
        config.gitea.api_url,
        token,
        timeout_s=config.gitea.timeout_s,
        transport=transport,  # type: ignore[arg-type]
    )


@asynccontextmanager
async def running_bot(
    config: Config,
    *,
    outbox_base_delay_s: float = 1.0,
    transport: object | None = None,
    matrix_retry_max_s: float = 30.0,
) -> AsyncIterator[Bot]:
    """Build the bot, start its background tasks, and tear everything down on exit."""
    data_dir = config.server.data_dir
    log_dir = data_dir / "runs"
    log_dir.mkdir(parents=True, exist_ok=True)
    store = await Store.open(data_dir / "redfix.sqlite3")
    redact = Redactor(config.secrets())
    gitea = gitea_client(config, transport)
    # Matrix is optional; its door wakes the dispatcher like the webhook does.
    matrix = (
        MatrixBot(config.matrix, store, lambda: dispatcher.wake(), retry_max_s=matrix_retry_max_s)
        if config.matrix is not None
        else None
    )
    outbox = Outbox(
        store,
        gitea,
        redact,
        status_context=config.gitea.status_context,
        bot_login=config.gitea.bot_login,
        base_delay_s=outbox_base_delay_s,
        matrix=matrix,
        notify_room=config.matrix.notify_room if config.matrix is not None else "",
    )
    runners = {
        h.name: SshRunner(h, config.harness_for(h.name), log_dir, redact=redact)
        for h in config.hosts
    }
    pool = HostPool(
        [(h.name, h.capacity) for h in config.hosts], max_concurrent=config.scheduler.max_concurrent
    )
    forge = GiteaForge(gitea, config.gitea.bot_login)
    jobs, sweeps = work(config, store, outbox, forge, pool, runners)
    watcher = (
        SweepWatcher(store, sweeps, settle_s=config.sweep.settle_s, poll_s=config.sweep.poll_s)
        if config.sweep.watch
        else None
    )
    matrix_user = config.matrix.user_id if config.matrix is not None else ""
    decode = Ingress(config.gitea.bot_login, matrix_user).decode
    settings, access = handler_settings(config), access_rule(config)
    dispatcher = Dispatcher(
        store, forge, outbox, jobs, decode, handlers.decide, settings, access, rooms=matrix
    )
    web_app = make_web_app(
        store,
        secret=config.gitea.webhook_secret.get_secret_value(),
        bot_login=config.gitea.bot_login,
        max_body=config.server.max_body_bytes,
        log_dir=log_dir,
        redact=redact,
        on_accept=dispatcher.wake,
        metrics=Metrics(),
        snapshot=figures(store, pool, runners),
        health=health_report(config, runners, pool, matrix),
        gitea_url=config.gitea.url,
        body_timeout_s=config.server.body_timeout_s,
    )
    await resume(store, pool)
    outbox_task = asyncio.create_task(outbox.run(), name="outbox")
    tasks = background(
        config, dispatcher, outbox_task, gitea, store, matrix, runners, pool, watcher
    )
    bot = Bot(
        config,
        store,
        gitea,
        outbox,
        dispatcher,
        jobs,
        runners,
        web_app,
        tasks,
        sweeps,
        matrix,
        watcher,
    )
    try:
        yield bot
    finally:
        await shut_down(bot, outbox_task)


async def shut_down(bot: Bot, outbox_task: asyncio.Task[None]) -> None:
    """Stop intake-side work, let the outbox say what is due, close every connection."""
    jobs, outbox = bot.jobs, bot.outbox
    # Remote runs are not stopped: they go on on their hosts and the next start adopts
    # them. Jobs are cancelled where they wait; nothing is marked failed for it.
    if jobs.active:
        log.info(
            "shutting down with %d job(s) in flight; their runs keep going on the hosts "
            "and are resumed at the next start",
            jobs.active,
        )
    await jobs.cancel_all()
    # The outbox finishes the pass in flight (a request is not cut mid-way), then stops;
    # the other tasks only wait or read, and are cancelled. Every wait here is bounded:
    # shutdown finishes even if a task ignores its cancellation (see bot/core/tasks.py).
    outbox.stop()
    await stop_tasks(
        [t for t in bot.tasks if t is not outbox_task], within_s=TASK_STOP_S, what="shutdown"
    )
    await bot.sweeps.stop()  # after the watcher: nothing new starts behind it
    try:
        async with asyncio.timeout(OUTBOX_STOP_S):
            await asyncio.shield(outbox_task)
    except (TimeoutError, Exception) as e:  # shutdown must finish; the store keeps the rest
        log.info("outbox did not stop within %gs (%s); cancelled", OUTBOX_STOP_S, e)
    await stop_tasks([outbox_task], within_s=TASK_STOP_S, what="shutdown")
    # Last chance for what is already due (e.g. a final verdict) before we go.
    try:
        async with asyncio.timeout(5):
            await outbox.flush_due()
    except (TimeoutError, Exception) as e:  # shutdown must finish; the store keeps the rest
        log.info("outbox flush at shutdown incomplete: %s", e)
    for r in bot.runners.values():
        await r.close()
    if bot.matrix is not None:
        await bot.matrix.close()
    await bot.gitea.aclose()
    await bot.store.close()


@asynccontextmanager
async def serving(bot: Bot) -> AsyncIterator[str]:
    """Serve the bot's web app on its configured address; yields the base URL. A connection
    that has not sent a request's headers within [server] header_timeout_s is closed (the body
    has body_timeout_s, enforced by the webhook itself)."""
    server = bot.config.server
    runner = await start_server(
        bot.web_app, server.host, server.port, header_timeout_s=server.header_timeout_s
    )
    try:
        yield f"http://{bot.config.server.listen}"
    finally:
        await runner.cleanup()


async def serve_forever(config: Config) -> None:
    """`redfix-bot serve`: run until SIGINT/SIGTERM."""
    import signal

    # The machine checks of check-config, again just before binding: refuse with its messages
    # rather than fail half-started on the first unwritable path.
    problems = config_problems(config)
    if problems:
        raise ConfigError("<config>", problems)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running_bot(config) as bot, serving(bot) as url:
        log.info("redfix listening on %s (public %s)", url, config.server.public_url)
        await stop.wait()
        log.info("shutting down")
