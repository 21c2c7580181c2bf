"""What the bot reads off a CI host besides a run's log: results.json and the run's JUnit files
over SFTP, or over exec channels where the host has no SFTP (bot.adapters.ssh.files; a file
over its cap is refused, not truncated), the newest red run of a recipe (the
reference), and the output of short operator-configured commands (evidence, the busy probe),
capped. Everything handed on is redacted: the harness's words can quote a secret.

Names reaching here (run ids, recipes) were checked by the runner before any path is built.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import posixpath
import shlex

import asyncssh

from bot.adapters.config import HarnessConfig
from bot.adapters.ssh.connection import HostConnection, RunnerError, reason
from bot.adapters.ssh.files import FileError, HostFiles, NoSuchFile, TooBig, open_files
from bot.model import RUN_ID_RE, ResultsSummary, RunSpec, SeenRun, ascii_int
from bot.render.redact import Redactor
from bot.verdict.results import (
    MAX_RESULTS_BYTES,
    ResultsError,
    parse_junit_results,
    parse_results,
    run_marks,
)

log = logging.getLogger(__name__)

MAX_JUNIT_BYTES = 1024 * 1024
MAX_JUNIT_FILES = 20


class HostReader:
    """Reads results, references, evidence and the busy count off one host."""

    def __init__(self, link: HostConnection, harness: HarnessConfig, redact: Redactor) -> None:
        self._link = link
        self._harness = harness
        self._redact = redact

    # --- results --------------------------------------------------------------------------

    async def read_results(self, run_id: str) -> tuple[ResultsSummary | None, str]:
        """The run's results (results.json plus its JUnit files, or JUnit alone for the junit
        profile), parsed; (None, why) if missing or malformed."""
        conn = await self._link.get()
        if self._junit_only:
            try:
                async with open_files(conn, self._link.where) as files:
                    return self._junit_summary(run_id, await self._read_junit(files, run_id))
            except (OSError, asyncssh.Error) as e:
                where = self._harness.junit_dir(run_id)
                return None, f"cannot read the JUnit files in {where}: {reason(e)}"
        path = self._harness.results_path(run_id)
        try:
            async with open_files(conn, self._link.where) as files:
                try:
                    raw = await files.read(path, MAX_RESULTS_BYTES)
                except NoSuchFile:
                    return None, f"results.json missing at {path}"
                junit = await self._read_junit(files, run_id)
        except TooBig as e:
            return None, f"results.json at {path} is {e.size} bytes, over the {e.cap} limit"
        except FileError as e:
            return None, f"cannot read {path}: {e}"
        except (OSError, asyncssh.Error) as e:
            return None, f"cannot read {path}: {reason(e)}"
        try:
            return self._redact_results(parse_results(raw, junit)), ""
        except ResultsError as e:
            return None, self._redact(str(e))

    @property
    def _junit_only(self) -> bool:
        return self._harness.harness_profile().results == "junit"

    def _junit_summary(
        self, run_id: str, files: dict[str, bytes]
    ) -> tuple[ResultsSummary | None, str]:
        """The `junit` profile's results: JUnit alone. Such a run carries no unit name (one
        project per host), so its summary's `recipe` is ""."""
        try:
            return self._redact_results(parse_junit_results(run_id, "", files)), ""
        except ResultsError as e:
            return None, self._redact(f"{e} ({self._harness.junit_dir(run_id)})")

    async def _read_junit(self, files: HostFiles, run_id: str) -> dict[str, bytes]:
        """Every readable *.xml in the run's JUnit dir, within the caps; the rest is skipped."""
        directory = self._harness.junit_dir(run_id)
        try:
            entries = await files.list_dir(directory)
        except (NoSuchFile, FileError):
            return {}  # no JUnit dir: the results still stand, without assertion texts
        names = sorted(e.name for e in entries if e.name.endswith(".xml") and e.kind == "file")
        found: dict[str, bytes] = {}
        for name in names[:MAX_JUNIT_FILES]:
            try:
                found[name] = await files.read(posixpath.join(directory, name), MAX_JUNIT_BYTES)
            except (TooBig, NoSuchFile, FileError) as e:
                log.warning("run %s: skipping JUnit file %s: %s", run_id, name, e)
        return found

    def _redact_results(self, summary: ResultsSummary) -> ResultsSummary:
        """JUnit messages are the harness's words: they can quote a secret too."""
        failing = tuple(
            dataclasses.replace(t, message=self._redact(t.message)) for t in summary.failing
        )
        return dataclasses.replace(summary, failing=failing)

    async def _run_dirs(self, files: HostFiles) -> list[tuple[float, str]] | None:
        """The runs dir's run directories as (mtime, run id), oldest first (the name breaks
        ties: SFTP v3 gives whole seconds); None when there is no runs dir yet."""
        try:
            entries = await files.list_dir(self._harness.runs_dir)
        except NoSuchFile:
            log.warning("no runs dir %s on %s yet", self._harness.runs_dir, self._link.where)
            return None
        return sorted(
            (e.mtime, e.name) for e in entries if e.kind == "dir" and RUN_ID_RE.match(e.name)
        )

    async def find_reference(self, recipe: str, limit: int) -> ResultsSummary | None:
        """The newest red results of `recipe` among the `limit` newest run dirs, or None.

        RunnerError if the host cannot be asked at all: "no reference" must mean none was found.
        """
        conn = await self._link.get()
        try:
            async with open_files(conn, self._link.where) as files:
                return await self._find_reference(files, recipe, limit)
        except (OSError, asyncssh.Error, FileError) as e:
            if conn.is_closed():
                self._link.forget(conn)
            raise RunnerError(
                f"{self._link.where}: cannot search {self._harness.runs_dir}: {reason(e)}"
            ) from None

    async def _find_reference(
        self, files: HostFiles, recipe: str, limit: int
    ) -> ResultsSummary | None:
        runs = await self._run_dirs(files)
        for _mtime, run_id in reversed((runs or [])[-limit:] if limit else []):
            if self._junit_only:
                found, _ = self._junit_summary(run_id, await self._read_junit(files, run_id))
                if found is not None and found.red:
                    return found  # one project per host: its newest red run
                continue
            try:
                raw = await files.read(self._harness.results_path(run_id), MAX_RESULTS_BYTES)
                summary = parse_results(raw)
            except (TooBig, NoSuchFile, FileError, ResultsError):
                continue  # a run without usable results cannot be a reference
            if summary.recipe == recipe and summary.red:
                junit = await self._read_junit(files, run_id)
                return self._redact_results(parse_results(raw, junit))
        return None

    async def scan_runs(self, limit: int, newer_than: float) -> list[SeenRun]:
        """The newest `limit` run dirs with an mtime after `newer_than`, newest first, each
        with its results (JUnit messages for red ones) or why it has none. RunnerError if
        the host cannot be asked at all: an empty list must mean there were none."""
        conn = await self._link.get()
        try:
            async with open_files(conn, self._link.where) as files:
                dirs = await self._run_dirs(files)
                newest = [(m, name) for m, name in reversed(dirs or []) if m > newer_than]
                return [await self._seen(files, run_id, m) for m, run_id in newest[:limit]]
        except (OSError, asyncssh.Error, FileError) as e:
            if conn.is_closed():
                self._link.forget(conn)
            raise RunnerError(
                f"{self._link.where}: cannot read {self._harness.runs_dir}: {reason(e)}"
            ) from None

    async def _seen(self, files: HostFiles, run_id: str, mtime: float) -> SeenRun:
        """One run dir as the sweep scan reads it."""
        path = self._harness.results_path(run_id)
        host = self._link.name
        if self._junit_only:  # JUnit alone names no recipe: nothing to attribute it to
            why = "the junit profile's runs name no recipe; a sweep reads results.json"
            return SeenRun(run_id, host, mtime, mtime, problem=why)
        try:
            raw = await files.read(path, MAX_RESULTS_BYTES)
        except NoSuchFile:
            return SeenRun(run_id, host, mtime, mtime, problem="no results.json")
        except (TooBig, FileError) as e:
            return SeenRun(run_id, host, mtime, mtime, problem=f"results.json: {e}")
        marked, finished = run_marks(raw, self._harness.verification_field)
        try:
            summary = parse_results(raw)
            if summary.red:
                summary = parse_results(raw, await self._read_junit(files, run_id))
        except ResultsError as e:
            problem = self._redact(str(e))
            return SeenRun(run_id, host, mtime, mtime, problem=problem, verification=marked)
        return SeenRun(
            run_id,
            host,
            mtime,
            finished if finished is not None else mtime,
            self._redact_results(summary),
            verification=marked,
        )

    # --- short commands -------------------------------------------------------------------

    async def _short(self, command: str, limit_s: float, cap: int) -> tuple[int | None, str]:
        """Run a short operator-configured command in the workdir; (exit code, capped output).

        Bounded on the remote side too (coreutils `timeout`): asyncssh's own timeout would leave
        the remote command running."""
        conn = await self._link.get()
        script = (
            f"cd {shlex.quote(self._harness.workdir)} 2>/dev/null || cd /; "
            f"exec timeout -k 5 {math.ceil(limit_s)} sh -c {shlex.quote(command)} 2>&1"
        )
        try:
            async with asyncio.timeout(limit_s + 10):
                done = await conn.run(script, stdin=asyncssh.DEVNULL, encoding=None, check=False)
        except (OSError, asyncssh.Error, TimeoutError) as e:
            if conn.is_closed():
                self._link.forget(conn)
            raise RunnerError(
                f"{self._link.where}: command did not complete: {reason(e)}"
            ) from None
        raw = done.stdout if isinstance(done.stdout, bytes) else b""
        if len(raw) > cap:  # the end of a log says most about how it ended
            raw = b"[... cut ...]\n" + raw[-cap:]
        # Redacted after the cut: a key block that lost its BEGIN, a secret that lost its head.
        return done.exit_status, self._redact(raw.decode("utf-8", "replace"))

    async def busy(self) -> int | None:
        """Active runs on the host per the configured busy probe; None when there is none."""
        probe = self._harness.busy_probe
        if not probe:
            return None
        code, out = await self._short(probe, 60, 4096)
        text = out.strip()
        count = ascii_int(text)
        if code != 0 or count is None:
            raise RunnerError(
                f"{self._link.where}: busy probe exited {code} and printed {text[:80]!r}, "
                "not a number of active runs"
            )
        return count

    async def evidence(self, spec: RunSpec) -> list[tuple[str, str]]:
        """Run the configured evidence commands for a run; (command, capped output) each."""
        runs_dir = self._harness.runs_dir.rstrip("/")
        values = {
            "recipe": spec.recipe,
            "run_id": spec.run_id,
            "runs_dir": runs_dir,
            "run_dir": posixpath.join(runs_dir, spec.run_id),
        }
        quoted = {k: shlex.quote(v) for k, v in values.items()}
        out: list[tuple[str, str]] = []
        for template in self._harness.evidence:
            command = template.format(**quoted)
            code, text = await self._short(
                command, self._harness.evidence_timeout_s, self._harness.evidence_max_bytes
            )
            shown = template.format(**values)
            out.append((shown if code == 0 else f"{shown}  (exit {code})", text))
        return out
