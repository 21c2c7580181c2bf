"""The pages a person reads: the index, the results report and each sweep's (page and JSON),
each run's page and log.

Everything here leaves redacted once it is rendered (`redacted`, and a streaming redactor for
logs), so the redactor sees the final, escaped text.
"""

from __future__ import annotations

import codecs
import html
import json
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from bot.adapters.store import Store
from bot.adapters.web.http import problem
from bot.core.sweepboard import sweep_view
from bot.model import RUN_ID_RE, ascii_int
from bot.model.records import SweepRow
from bot.render.markup import html_page
from bot.render.redact import Redactor
from bot.render.report import SweepReport, build_report, render_report_html, report_json
from bot.render.sweep import SweepView, render_sweep_html, sweep_json

LOG_CHUNK_BYTES = 1 << 16  # a served log is read, redacted and written this much at a time
INDEX_RUNS_SHOWN = 200


@dataclass(frozen=True)
class Pages:
    """The page routes and what they read: the store, the run logs' folder, the redactor, and
    Gitea's address (the report links to its PRs)."""

    store: Store
    log_dir: Path
    redact: Redactor
    gitea_url: str = ""

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.index),
            web.get("/report", self.report_page),
            web.get("/api/report", self.report_api),
            web.get("/sweeps/{sweep_id}", self.sweep_page),
            web.get("/api/sweeps/{sweep_id}", self.sweep_api),
            web.get("/runs/{run_id}", self.run_page),
            web.get("/runs/{run_id}/log", self.run_log),
            web.get("/favicon.ico", self.favicon),
        ]

    async def favicon(self, request: web.Request) -> web.Response:
        """No icon: a browser asks for one beside every JSON or log it shows, and a 404 for
        it would be noise in its console and in the logs."""
        return web.Response(status=204, headers={"Cache-Control": "max-age=86400"})

    def redacted(self, text: str, content_type: str) -> web.Response:
        """The one way a page or API answer leaves: redacted once it is rendered, so the
        redactor sees the final, escaped text (bot.render.redact knows each escaping)."""
        return web.Response(text=self.redact(text), content_type=content_type)

    async def index(self, request: web.Request) -> web.Response:
        """Where a person starts: every page the bot serves, and each run's page and log (the
        newest first; a long-lived bot lists its newest INDEX_RUNS_SHOWN)."""
        runs = await self.store.runs()
        e = html.escape
        rows = "".join(
            f'<tr><td><a href="runs/{e(r.run_id)}"><code>{e(r.run_id)}</code></a></td>'
            f"<td>{e(r.recipe)}</td><td>{e(r.kind)}</td><td>{e(r.state)}</td>"
            f'<td><a href="runs/{e(r.run_id)}/log">log</a></td></tr>'
            for r in reversed(runs[-INDEX_RUNS_SHOWN:])
        )
        shown = (
            f"<p>The newest {INDEX_RUNS_SHOWN} of {len(runs)} runs.</p>"
            if len(runs) > INDEX_RUNS_SHOWN
            else ""
        )
        table = (
            f"{shown}<table><thead><tr><th>run</th><th>recipe</th><th>kind</th><th>state</th>"
            f"<th>log</th></tr></thead><tbody>{rows}</tbody></table>"
            if runs
            else "<p>No run yet.</p>"
        )
        page = html_page(
            "redfix",
            "<h1>redfix</h1><ul>"
            '<li><a href="report">results table</a> (<a href="api/report">JSON</a>)</li>'
            '<li><a href="sweeps/latest">the newest sweep</a> '
            '(<a href="api/sweeps/latest">JSON</a>)</li>'
            '<li><a href="healthz">health</a> (/healthz)</li>'
            '<li><a href="metrics">metrics</a> (/metrics, Prometheus)</li>'
            f"</ul><h2>Runs</h2>{table}",
            "th,td{text-align:left;padding:.2rem .8rem .2rem 0}",
        )
        return self.redacted(page, "text/html")

    async def _report(self) -> SweepReport:
        store = self.store
        return build_report(
            await store.triages(), await store.overrides(), self.gitea_url, await store.runs()
        )

    async def report_page(self, request: web.Request) -> web.Response:
        page = render_report_html(
            await self._report(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        )
        return self.redacted(page, "text/html")

    async def report_api(self, request: web.Request) -> web.Response:
        text = json.dumps(report_json(await self._report()), indent=2)
        return self.redacted(text, "application/json")

    async def _sweep(self, request: web.Request) -> SweepView | web.Response:
        """The sweep a page names (`latest`, or its number), as a view; else the problem."""
        name = request.match_info["sweep_id"]
        sweep: SweepRow | None
        if name == "latest":
            sweep = await self.store.latest_sweep()
        else:
            number = ascii_int(name, max_digits=9)
            if number is None:
                return problem(400, "a sweep is `latest` or its number")
            sweep = await self.store.sweep(number)
        if sweep is None:
            return problem(404, f"no sweep {name}")
        return await sweep_view(self.store, sweep, gitea_url=self.gitea_url, public_url="")

    async def sweep_page(self, request: web.Request) -> web.Response:
        view = await self._sweep(request)
        if isinstance(view, web.Response):
            return view
        return self.redacted(render_sweep_html(view), "text/html")

    async def sweep_api(self, request: web.Request) -> web.Response:
        view = await self._sweep(request)
        if isinstance(view, web.Response):
            return view
        return self.redacted(json.dumps(sweep_json(view), indent=2), "application/json")

    async def run_page(self, request: web.Request) -> web.Response:
        """The page a commit status links to: the run's state, and its log."""
        run_id = request.match_info["run_id"]
        if not RUN_ID_RE.match(run_id):
            return problem(400, "not a run id")
        run = await self.store.run(run_id)
        if run is None:
            return problem(404, f"no run {run_id}")
        e = html.escape
        shown: dict[str, object] = {
            "recipe": run.recipe,
            "kind": run.kind,
            "phase": run.phase,
            "host": run.host,
            "state": run.state,
            "exit_code": run.exit_code,
            "note": run.note,
            "problem": run.problem,  # only when the run did not complete
        }
        rows = "".join(
            f"<tr><th>{e(k)}</th><td>{e(str(v) if v is not None else '—')}</td></tr>"
            for k, v in shown.items()
            if k != "problem" or v
        )
        if run.teardown:
            rows += f"<tr><th>teardown</th><td>{e(run.teardown)}</td></tr>"
        page = html_page(
            f"redfix run {run_id}",
            f"<h1>run <code>{e(run_id)}</code></h1><table>{rows}</table>"
            f'<p><a href="{e(run_id)}/log">full log</a> · '
            '<a href="../report">results table</a></p>',
            "th{text-align:left;padding-right:1rem}",
        )
        return self.redacted(page, "text/html")

    async def run_log(self, request: web.Request) -> web.StreamResponse:
        run_id = request.match_info["run_id"]
        if not RUN_ID_RE.match(run_id):
            return problem(400, "not a run id")
        path = self.log_dir / f"{run_id}.log"
        if not path.is_file():
            if await self.store.run_exists(run_id):
                return web.Response(text=f"run {run_id} has no output yet\n")
            return problem(404, f"no run {run_id}")
        resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        await resp.prepare(request)
        # One streaming redactor for the whole log: a secret or a private key block that
        # straddles the chunks (or lines) it is read in is masked as if the log were redacted
        # whole, and memory stays flat for huge logs.
        stream = self.redact.stream()
        decode = codecs.getincrementaldecoder("utf-8")("replace").decode
        with path.open("rb") as f:
            while chunk := f.read(LOG_CHUNK_BYTES):
                out = stream.feed(decode(chunk))
                if out:
                    await resp.write(out.encode())
        await resp.write((stream.feed(decode(b"", True)) + stream.close()).encode())
        await resp.write_eof()
        return resp
