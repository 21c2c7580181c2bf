"""A simulated cc-ci harness: the real one's env contract, exit codes and artefacts, scripted."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import re
import signal
import sys
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from xml.etree import ElementTree as ET

EXIT_GREEN = 0
EXIT_RED = 1
EXIT_USAGE = 2
EXIT_DEADLINE = 142
EXIT_TERMINATED = 143

DEFAULT_RUNS_DIR = "/var/lib/cc-ci-runs"
DEFAULT_STAGES = "install,backup,restore,custom"
DEFAULT_STAGE_SECONDS = 0.05
OUTCOMES = frozenset("GRXTHE")

# Kept in step with bot.model by hand: this file must run as a bare script on a CI host.
_RECIPE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
# Stage names become file names (junit-<stage>.xml).
_STAGE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class Scenario:
    """How one recipe behaves: a cycling pattern of outcomes and its reference failure."""

    pattern: str = "G"
    test: str = ""
    assertion: str = ""
    stage: str = ""
    version: str = "1.0.0+sim"
    # The outcome when other runs share the host (a load flake); "" = same as alone.
    loaded: str = ""
    # How long a run watches for company after it starts ("0": only runs already alive when
    # it starts count, as a recipe that breaks only on a host that is busy when it deploys).
    load_wait_s: str = "1.0"
    # Comma-separated head-commit prefixes (REF) at which the recipe is fixed: runs there are
    # green, as a verified fix PR's are. "" = never.
    fixed_at: str = ""


DEFAULT_SCENARIOS: dict[str, Scenario] = {
    "custom-html": Scenario("G", version="1.9.0+1.27.3"),
    # Green alone; its reference failure is the one seen under load in a sweep.
    "mumble": Scenario(
        "G",
        loaded="R",
        test="custom/test_protocol_handshake.py::test_handshake_completes_with_channel_presence",
        assertion=(
            "AssertionError: handshake did not complete: channel 'Root' not present after 30s"
        ),
        stage="custom",
        version="0.3.0+v1.5.735",
    ),
    "mattermost-lts": Scenario(
        "R",
        test="test_restore.py::test_restore_returns_state",
        assertion='psycopg2.errors.UndefinedTable: relation "ci_marker" does not exist',
        stage="restore",
        version="2.1.4+9.11.6",
    ),
    "uptime-kuma": Scenario(
        "RG",
        test="test_restore.py::test_restore_returns_state",
        assertion="AssertionError: restored monitor count 0 != 3 (409 container not running)",
        stage="restore",
        version="1.4.0+1.23.16",
    ),
    "discourse": Scenario("T", version="0.9.1+3.3.2"),
    "keycloak": Scenario("E", version="10.2.0+26.0.7"),
    # Red alone, but not the way it was red in the sweep.
    "ghost": Scenario(
        "X",
        test="custom/test_members.py::test_signup_sends_magic_link",
        assertion="AssertionError: no magic-link mail arrived within 60s",
        stage="custom",
        version="2.3.0+5.105.0",
    ),
}

# What each stage runs when nothing goes wrong, so logs and reports carry realistic test ids.
STAGE_TESTS: dict[str, tuple[str, ...]] = {
    "install": ("test_install.py::test_install_serves_http",),
    "upgrade": ("test_upgrade.py::test_upgrade_keeps_state",),
    "backup": ("test_backup.py::test_backup_creates_snapshot",),
    "restore": ("test_restore.py::test_restore_returns_state",),
    "custom": ("custom/test_smoke.py::test_app_answers",),
    "lint": ("test_lint.py::test_recipe_lint",),
}

# "A different failure" for pattern X; the second is used when the first is the reference itself.
OTHER_FAILURES: tuple[tuple[str, str, str], ...] = (
    (
        "test_install.py::test_install_serves_http",
        "install",
        "AssertionError: GET https://{domain}/ returned 502 Bad Gateway after 120s",
    ),
    (
        "test_backup.py::test_backup_creates_snapshot",
        "backup",
        "AssertionError: backup of service app failed: 409 container not running",
    ),
)


class UsageError(Exception):
    """The environment does not describe a runnable job."""


class Terminated(BaseException):
    """SIGTERM arrived; a BaseException so ordinary `except Exception` blocks do not swallow it."""


@dataclass(frozen=True)
class Job:
    """One run, as described by the environment."""

    recipe: str
    run_id: str
    ref: str
    pr: str
    quick: bool
    runs_dir: Path
    stages: tuple[str, ...]
    stage_seconds: float
    scenario: Scenario
    echo_var: str

    @property
    def sim_dir(self) -> Path:
        return self.runs_dir / ".sim"

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.run_id

    @property
    def domain(self) -> str:
        digest = hashlib.sha256(self.run_id.encode()).hexdigest()[:6]
        return f"{self.recipe[:4]}-{digest}.ci.example"


@dataclass
class CaseRecord:
    name: str
    status: str
    ms: int
    message: str = ""


@dataclass
class StageRecord:
    name: str
    status: str = "pass"
    tests: list[CaseRecord] = field(default_factory=list)


def say(line: str) -> None:
    """One log line, flushed at once: the runner streams the log to chat as it happens."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        # The reader is gone (a dropped SSH session): keep going, teardown must still happen.
        # Pointing stdout at /dev/null also keeps the exit-time flush from changing the code.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _scenario_from(raw: object, recipe: str) -> Scenario:
    if not isinstance(raw, dict):
        raise UsageError(f"SIM_SCENARIOS: entry for {recipe!r} is not an object")
    allowed = {
        "pattern",
        "test",
        "assertion",
        "stage",
        "version",
        "loaded",
        "fixed_at",
        "load_wait_s",
    }
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise UsageError(f"SIM_SCENARIOS: {recipe}: unknown keys {', '.join(unknown)}")
    values = {k: v for k, v in raw.items() if k in allowed}
    if not all(isinstance(v, str) for v in values.values()):
        raise UsageError(f"SIM_SCENARIOS: {recipe}: every value must be a string")
    base = DEFAULT_SCENARIOS.get(recipe, Scenario())
    return Scenario(
        pattern=values.get("pattern", base.pattern),
        test=values.get("test", base.test),
        assertion=values.get("assertion", base.assertion),
        stage=values.get("stage", base.stage),
        version=values.get("version", base.version),
        loaded=values.get("loaded", base.loaded),
        fixed_at=values.get("fixed_at", base.fixed_at),
        load_wait_s=values.get("load_wait_s", base.load_wait_s),
    )


def load_scenario(recipe: str, path: str) -> Scenario:
    """The recipe's behaviour: from the SIM_SCENARIOS file if it names the recipe, else built in."""
    scenario = DEFAULT_SCENARIOS.get(recipe, Scenario())
    if path:
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UsageError(f"SIM_SCENARIOS: cannot read {path}: {e}") from None
        if not isinstance(doc, dict):
            raise UsageError("SIM_SCENARIOS: top level must be an object of recipe -> behaviour")
        if recipe in doc:
            scenario = _scenario_from(doc[recipe], recipe)
    try:
        wait = float(scenario.load_wait_s)
    except ValueError:
        wait = -1.0
    if not 0 <= wait <= 60:
        raise UsageError(f"SIM_SCENARIOS: {recipe}: load_wait_s must be seconds, 0 to 60")
    bad = set(scenario.pattern + scenario.loaded) - OUTCOMES
    if not scenario.pattern or bad or len(scenario.loaded) > 1:
        letters = "".join(sorted(OUTCOMES))
        raise UsageError(
            f"SIM_SCENARIOS: {recipe}: pattern {scenario.pattern!r} must use {letters}"
        )
    return scenario


def load_job(env: Mapping[str, str]) -> Job:
    """Read and check the environment the way the real harness does: names, ids, stage list."""
    recipe = env.get("RECIPE", "")
    if not _RECIPE_RE.match(recipe):
        raise UsageError(f"RECIPE must be a recipe name, got {recipe!r}")
    run_id = env.get("CCCI_RUN_ID", "")
    if not _RUN_ID_RE.match(run_id):
        raise UsageError(f"CCCI_RUN_ID must be a run id, got {run_id!r}")
    stages = tuple(s.strip() for s in env.get("STAGES", DEFAULT_STAGES).split(",") if s.strip())
    bad = [s for s in stages if not _STAGE_RE.match(s)]
    if not stages or bad:
        raise UsageError(f"STAGES must be a comma-separated list of stage names, got {stages!r}")
    try:
        stage_seconds = float(env.get("SIM_STAGE_SECONDS", str(DEFAULT_STAGE_SECONDS)))
    except ValueError:
        raise UsageError("SIM_STAGE_SECONDS must be a number of seconds") from None
    if not 0 <= stage_seconds <= 3600:
        raise UsageError("SIM_STAGE_SECONDS must be between 0 and 3600")
    return Job(
        recipe=recipe,
        run_id=run_id,
        ref=env.get("REF", ""),
        pr=env.get("PR", ""),
        quick=env.get("CCCI_QUICK", "0") == "1",
        runs_dir=Path(env.get("CCCI_RUNS_DIR", DEFAULT_RUNS_DIR)),
        stages=stages,
        stage_seconds=stage_seconds,
        scenario=load_scenario(recipe, env.get("SIM_SCENARIOS", "")),
        echo_var=env.get("SIM_ECHO_ENV", ""),
    )


@contextmanager
def _locked(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # closing drops the flock


def next_outcome(job: Job) -> str:
    """Advance the recipe's persisted run counter; concurrent runs each get their own slot."""
    count_file = job.sim_dir / f"{job.recipe}.count"
    with _locked(job.sim_dir / f"{job.recipe}.lock"):
        try:
            count = int(count_file.read_text(encoding="ascii").strip() or "0")
        except (FileNotFoundError, ValueError):
            count = 0
        tmp = count_file.with_suffix(".count.tmp")
        tmp.write_text(f"{count + 1}\n", encoding="ascii")
        tmp.replace(count_file)
    return job.scenario.pattern[count % len(job.scenario.pattern)]


def _others_active(job: Job) -> int:
    return sum(
        1
        for p in (job.sim_dir / "active").iterdir()
        if not p.name.startswith(".") and p.name != job.run_id
    )


def _outcome_under_load(job: Job, outcome: str) -> str:
    """A load flake: behave as `loaded` when other runs share the host. Runs started together
    need a moment to all show up (SSH logins, interpreter start), so watch for `load_wait_s`
    (a second by default; 0: only what is alive at the start counts)."""
    deadline = time.monotonic() + float(job.scenario.load_wait_s)
    while _others_active(job) == 0:
        if time.monotonic() >= deadline:
            return outcome
        time.sleep(0.05)
    say(f"[cc-ci] {_others_active(job)} other run(s) active on this host")
    record_event(job, "loaded", outcome=job.scenario.loaded)
    return job.scenario.loaded


def record_event(job: Job, event: str, **extra: object) -> None:
    """Append a start/end line so host-side tests can see which runs overlapped."""
    line = json.dumps(
        {
            "event": event,
            "time": time.time(),
            "pid": os.getpid(),
            "recipe": job.recipe,
            "run_id": job.run_id,
            "ref": job.ref,
            "host": os.environ.get("REDFIX_SIM_HOST", ""),
            **extra,
        }
    )
    with (
        _locked(job.sim_dir / "events.lock"),
        (job.sim_dir / "events.jsonl").open("a", encoding="utf-8") as f,
    ):
        f.write(line + "\n")


def write_teardown_marker(runs_dir: Path, run_id: str, by: str) -> Path:
    """Record that a teardown happened, and who did it (the run on SIGTERM, or teardown mode)."""
    marker_dir = runs_dir / ".sim" / "teardown"
    marker_dir.mkdir(parents=True, exist_ok=True)
    marker = marker_dir / run_id
    entry = {"time": _now(), "epoch": time.time(), "by": by, "pid": os.getpid()}
    with marker.open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
    return marker


def _stage_for(test_id: str, stages: tuple[str, ...], preferred: str) -> str:
    """Where a scripted failure happens: the named stage if it runs, else one its id suggests."""
    if preferred in stages:
        return preferred
    head = test_id.split("/", 1)[0] if "/" in test_id else ""
    if head in stages:
        return head
    file_name = test_id.split("::", 1)[0].rsplit("/", 1)[-1]
    for stage in stages:
        if file_name == f"test_{stage}.py":
            return stage
    return stages[-1]


def _failure_for(job: Job, outcome: str) -> tuple[str, str, str] | None:
    """(test id, stage, assertion) of the failure this outcome scripts, or None."""
    sc = job.scenario
    if outcome == "R":
        test = sc.test or OTHER_FAILURES[0][0]
        assertion = sc.assertion or "AssertionError: reference failure (no assertion scripted)"
        return test, _stage_for(test, job.stages, sc.stage), assertion
    if outcome == "X":
        test, stage, assertion = next(f for f in OTHER_FAILURES if f[0] != sc.test)
        return test, _stage_for(test, job.stages, stage), assertion.format(domain=job.domain)
    return None


def _claim_warm_domain(job: Job) -> str:
    """Where outcome E breaks: the canonical warm domain belongs to a live service."""
    live_services = {f"warm-{job.recipe}.ci.example": "sso (live, must never be touched)"}
    domain = f"warm-{job.recipe}.ci.example"
    owner = live_services.get(domain)
    if owner is not None:
        raise RuntimeError(f"warm domain {domain} is already served by {owner}")
    return domain


def _classname(test_id: str) -> tuple[str, str]:
    path, _, name = test_id.partition("::")
    return path.removesuffix(".py").replace("/", "."), name


def write_junit(path: Path, stage: StageRecord) -> None:
    """A pytest-style JUnit file for one stage."""
    failures = sum(1 for t in stage.tests if t.status == "fail")
    errors = sum(1 for t in stage.tests if t.status == "error")
    total_s = sum(t.ms for t in stage.tests) / 1000
    root = ET.Element("testsuites")
    suite = ET.SubElement(
        root,
        "testsuite",
        name="pytest",
        errors=str(errors),
        failures=str(failures),
        skipped="0",
        tests=str(len(stage.tests)),
        time=f"{total_s:.3f}",
        timestamp=_now(),
        hostname="cc-ci",
    )
    for t in stage.tests:
        classname, name = _classname(t.name)
        case = ET.SubElement(
            suite, "testcase", classname=classname, name=name, time=f"{t.ms / 1000:.3f}"
        )
        if t.status in ("fail", "error"):
            tag = "failure" if t.status == "fail" else "error"
            bad = ET.SubElement(case, tag, message=t.message)
            bad.text = f"{t.name}\n    assert_ready()\nE   {t.message}\n"
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def write_results(job: Job, stages: list[StageRecord]) -> None:
    """results.json schema 2, written atomically so a reader never sees half a file."""
    doc = {
        "schema": 2,
        "recipe": job.recipe,
        "version": job.scenario.version,
        "pr": job.pr,
        "ref": job.ref,
        "run_id": job.run_id,
        "finished": _now(),
        "stages": [
            {
                "name": s.name,
                "status": s.status,
                "tests": [{"name": t.name, "status": t.status, "ms": t.ms} for t in s.tests],
            }
            for s in stages
        ],
        "level": "quick" if job.quick else "full",
        "flags": {"clean_teardown": True, "no_secret_leak": True},
    }
    tmp = job.run_dir / "results.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    tmp.replace(job.run_dir / "results.json")


def _stage_tests(stage: str) -> tuple[str, ...]:
    return STAGE_TESTS.get(stage, (f"test_{stage.replace('-', '_')}.py::test_{stage}_passes",))


def _run_tests(record: StageRecord, failure: tuple[str, str, str] | None) -> None:
    """Run a stage's tests (the scripted failure among them, if it strikes this stage)."""
    stage = record.name
    tests = list(_stage_tests(stage))
    if failure and failure[1] == stage and failure[0] not in tests:
        tests.append(failure[0])
    for test in tests:
        ms = random.randint(40, 900)
        if failure and failure[0] == test and failure[1] == stage:
            record.tests.append(CaseRecord(test, "fail", ms, failure[2]))
            record.status = "fail"
            say(f"[pytest] {test} FAILED [{ms}ms]")
            say(f"[pytest] E   {failure[2]}")
        else:
            record.tests.append(CaseRecord(test, "pass", ms))
            say(f"[pytest] {test} PASSED [{ms}ms]")


def perform(job: Job, outcome: str) -> int:
    """Run the stages as scripted; return the exit code. SIGTERM surfaces as Terminated."""
    failure = _failure_for(job, outcome)
    # Where T, H and E strike: the scenario's stage, else the first (T: the second, once the app
    # is up, as the real deadline usually fires while waiting on a deployed app).
    special_stage = job.scenario.stage if job.scenario.stage in job.stages else job.stages[0]
    if outcome == "T" and job.scenario.stage not in job.stages and len(job.stages) > 1:
        special_stage = job.stages[1]
    records: list[StageRecord] = []
    skip_rest = False
    for index, stage in enumerate(job.stages, start=1):
        record = StageRecord(stage)
        records.append(record)
        if skip_rest:
            record.status = "skip"
            say(f"[cc-ci] ==> stage {stage} ({index}/{len(job.stages)}): skipped")
            continue
        say(f"[cc-ci] ==> stage {stage} ({index}/{len(job.stages)})")
        if stage == job.stages[0]:
            say(f"[cc-ci] abra app deploy {job.domain} --chaos --no-input")
        if outcome == "E" and stage == special_stage:
            try:
                _claim_warm_domain(job)
            except RuntimeError:
                traceback.print_exc()
                sys.stderr.flush()
                say(f"[cc-ci] <== stage {stage}: error (harness fault, see traceback)")
                record.status = "error"
                skip_rest = True
                continue
        say(f"[cc-ci] waiting for services of {job.domain} to converge")
        if outcome == "H" and stage == special_stage:
            say(f"[cc-ci] service {job.recipe}_app: 0/1 replicas, still waiting")
            while True:
                time.sleep(3600)
        time.sleep(job.stage_seconds)
        if outcome == "T" and stage == special_stage:
            say(f"[cc-ci] service {job.recipe}_app: 0/1 replicas (task restarting)")
            say("[cc-ci] DEADLINE: the 3600s run deadline fired; tearing down")
            say(f"[cc-ci] abra app undeploy {job.domain} --no-input")
            # What the run got to, as the harness leaves it: the stage it was in errored,
            # the rest never ran. A sweep reads the run as red from this alone.
            record.status = "error"
            records += [StageRecord(s, "skip") for s in job.stages[index:]]
            write_results(job, records)
            return EXIT_DEADLINE
        _run_tests(record, failure)
        write_junit(job.run_dir / f"junit-{stage}.xml", record)
        say(f"[cc-ci] <== stage {stage}: {record.status}")
        # Nothing is deployed after a failed install, so later stages cannot run.
        skip_rest = record.status != "pass" and stage == "install"
    say(f"[cc-ci] abra app undeploy {job.domain} --no-input")
    write_results(job, records)
    red = [r.name for r in records if r.status in ("fail", "error")]
    say(f"[cc-ci] result: {'red (' + ', '.join(red) + ')' if red else 'green'}")
    return EXIT_RED if red else EXIT_GREEN


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # A second TERM must not interrupt the teardown the first one started.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated


def run(job: Job) -> int:
    """Run mode: one scripted run with its markers, events and artefacts."""
    for d in (job.sim_dir / "active", job.run_dir):
        d.mkdir(parents=True, exist_ok=True)
    outcome = next_outcome(job)
    active = job.sim_dir / "active" / job.run_id
    pending = active.with_name(f".{job.run_id}.tmp")
    code = EXIT_TERMINATED
    try:
        record_event(job, "start", outcome=outcome)
        # Written whole (rename) and after the start event: whoever sees it can read both.
        pending.write_text(f"{os.getpid()}\n", encoding="ascii")
        pending.replace(active)
        say(f"[cc-ci] run {job.run_id}: recipe={job.recipe} ref={job.ref or '-'}")
        say(f"[cc-ci] pr={job.pr or '-'} domain={job.domain}")
        say(f"[cc-ci] stages: {','.join(job.stages)}{' (quick lane)' if job.quick else ''}")
        if job.echo_var:
            say(f"[cc-ci] env {job.echo_var}={os.environ.get(job.echo_var, '')}")
        if job.scenario.loaded:
            outcome = _outcome_under_load(job, outcome)
        fixes = [p for p in job.scenario.fixed_at.split(",") if p]
        if job.ref and any(job.ref.startswith(p) for p in fixes):
            say(f"[cc-ci] {job.ref[:10]} carries the fix")
            outcome = "G"
        code = perform(job, outcome)
    except Terminated:
        say("[cc-ci] SIGTERM received: tearing down")
        say(f"[cc-ci] abra app undeploy {job.domain} --no-input")
        write_teardown_marker(job.runs_dir, job.run_id, "sigterm")
        say("[cc-ci] torn down; exiting 143")
        code = EXIT_TERMINATED
    finally:
        pending.unlink(missing_ok=True)
        active.unlink(missing_ok=True)
        record_event(job, "end", outcome=outcome, exit=code)
    return code


def teardown(env: Mapping[str, str]) -> int:
    """Teardown mode: what the bot runs after a run it had to abandon."""
    run_id = env.get("CCCI_RUN_ID", "")
    if not _RUN_ID_RE.match(run_id):
        raise UsageError(f"CCCI_RUN_ID must be a run id, got {run_id!r}")
    runs_dir = Path(env.get("CCCI_RUNS_DIR", DEFAULT_RUNS_DIR))
    say(f"[cc-ci] teardown of run {run_id}: undeploying its apps")
    marker = write_teardown_marker(runs_dir, run_id, "teardown")
    say(f"[cc-ci] teardown done ({marker.name})")
    return EXIT_GREEN


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        if argv[1:] == ["teardown"]:
            return teardown(os.environ)
        if argv[1:]:
            raise UsageError(f"usage: {Path(argv[0]).name} [teardown]")
        return run(load_job(os.environ))
    except UsageError as e:
        print(f"[cc-ci] error: {e}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except Terminated:
        return EXIT_TERMINATED


if __name__ == "__main__":
    sys.exit(main(sys.argv))
