"""`redfix-bot`: serve, check-config, demo, --version."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bot import __version__
from bot.adapters.config import Config, ConfigError, load_config
from bot.render.redact import Redactor


class RedactingFilter(logging.Filter):
    """The redaction layer of the logs: masks secrets (bot.render.redact: every encoding, key
    blocks) in every record's final message, traceback and stack, whatever module wrote it."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            # Tracebacks quote values too (e.g. a URL with a token): format and scrub them here.
            record.exc_text = self._redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self._redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self._redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log pipelines; ids given as `extra=` become fields."""

    FIELDS = ("delivery_id", "command_id", "run_id", "host", "recipe")

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update({k: getattr(record, k) for k in self.FIELDS if hasattr(record, k)})
        if record.exc_info:
            out["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(level: str, redact: Redactor | None = None, log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if redact is not None:
        handler.addFilter(RedactingFilter(redact))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter (every SSH channel, every HTTP request) drowns the bot's own story.
    for noisy in ("asyncssh", "httpx", "aiohttp.access", "nio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _load(path: str) -> Config | None:
    """The config's schema alone, for commands that only read the store (not the machine)."""
    try:
        return load_config(path)
    except ConfigError as e:
        _print_problems(e.source, e.problems)
        return None


def _print_problems(source: str, problems: Sequence[str]) -> None:
    n = len(problems)
    print(f"{source}: {n} problem{'s' if n != 1 else ''}:", file=sys.stderr)
    for p in problems:
        print(f"  - {p}", file=sys.stderr)


def cmd_check_config(args: argparse.Namespace) -> int:
    from bot.adapters.preflight import check_config_file

    checked = check_config_file(args.path)
    if checked.problems or checked.config is None:
        _print_problems(checked.source, checked.problems)
        return 1
    cfg = checked.config
    hosts = ", ".join(
        f"{h.name} ({h.username}@{h.address}:{h.port}, capacity {h.capacity})" for h in cfg.hosts
    )
    print(f"{args.path}: OK")
    print(
        f"  gitea:  {cfg.gitea.url} as {cfg.gitea.bot_login}, "
        f"allowed orgs: {', '.join(cfg.gitea.allowed_orgs) or '(none: write access only)'}"
    )
    print(f"  hosts:  {hosts}")
    if cfg.matrix is not None:
        m = cfg.matrix
        print(
            f"  matrix: {m.user_id} on {m.homeserver}, rooms: {', '.join(m.rooms) or '(none)'}, "
            f"notify: {m.notify_room or '(none)'}"
        )
    print(
        f"  server: {cfg.server.listen}, public {cfg.server.public_url}, "
        f"data in {cfg.server.data_dir}"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from bot.adapters.preflight import check_config_file
    from bot.app import serve_forever

    # The checks check-config makes, with its messages: serve refuses before it binds.
    checked = check_config_file(args.config)
    if checked.problems or checked.config is None:
        _print_problems(checked.source, checked.problems)
        return 2
    cfg = checked.config
    configure_logging(
        args.log_level or cfg.server.log_level, Redactor(cfg.secrets()), cfg.server.log_format
    )
    try:
        asyncio.run(serve_forever(cfg))
    except ConfigError as e:  # the machine changed between the check and the start
        _print_problems(args.config, e.problems)
        return 2
    except OSError as e:
        # A path in the error is the real cause (data_dir, a key): never blame the address.
        if e.filename is not None:
            what = f"cannot use {e.filename}: {e.strerror or e}"
        else:
            what = f"cannot serve on {cfg.server.listen}: {e.strerror or e}"
        logging.getLogger("bot").error("%s", what)
        return 1
    return 0


def healthz_url(listen_host: str, port: int) -> str:
    """Where a local probe reaches a server bound to `listen_host`:`port`: an any-address bind
    (0.0.0.0, ::) answers on loopback, which is what a container's health check can reach."""
    loopback = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 - not a bind
    host = loopback.get(listen_host, listen_host)
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal in a URL
    return f"http://{host}:{port}/healthz"


def cmd_check_host(args: argparse.Namespace) -> int:
    """The host doctor on each configured host (or `--host`): one line per check."""
    import tempfile

    from bot.adapters.ssh.runner import SshRunner
    from bot.render.redact import Redactor

    cfg = _load(args.config)
    if cfg is None:
        return 2
    hosts = [h for h in cfg.hosts if not args.host or h.name == args.host]
    if not hosts:
        names = ", ".join(h.name for h in cfg.hosts)
        print(f"{args.config}: no host {args.host!r} (hosts: {names})", file=sys.stderr)
        return 2
    redact = Redactor(cfg.secrets())

    async def check() -> bool:
        fit = True
        with tempfile.TemporaryDirectory(prefix="redfix-check-host-") as logs:
            for h in hosts:
                runner = SshRunner(h, cfg.harness_for(h.name), Path(logs), redact=redact)
                try:
                    found = await runner.diagnose()
                finally:
                    await runner.close()
                state = "fit" if found.ok else f"{len(found.problems)} problem(s)"
                print(redact(f"{h.name} ({h.username}@{h.address}:{h.port}): {state}"))
                for c in found.checks:
                    print(redact(f"  {c.line}"))
                fit = fit and found.ok
        return fit

    return 0 if asyncio.run(check()) else 1


def cmd_healthcheck(args: argparse.Namespace) -> int:
    """Exit 0 when the running bot's /healthz answers 200 (for a container's HEALTHCHECK): it
    follows the configured `listen`, so changing the port needs no second edit."""
    import urllib.error
    import urllib.request

    cfg = _load(args.config)
    if cfg is None:
        return 1
    url = healthz_url(cfg.server.host, cfg.server.port)
    try:
        # the URL is built from the validated listen address, always plain http on a local bind
        with urllib.request.urlopen(url, timeout=args.timeout) as resp:  # noqa: S310
            status, body = resp.status, resp.read(2000)
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read(2000)
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        print(f"healthcheck: cannot reach {url}: {reason}", file=sys.stderr)
        return 1
    text = body.decode("utf-8", "replace").strip()
    if status != 200:
        print(f"healthcheck: {url} answered {status}: {text}", file=sys.stderr)
        return 1
    print(f"healthcheck: {url}: {text}")
    return 0


def cmd_signatures_check(args: argparse.Namespace) -> int:
    from bot.verdict.corpus import check_against, format_report
    from bot.verdict.rules import RulesError, RuleSet

    try:
        rules = RuleSet.load(Path(args.path))
    except RulesError as e:
        _print_problems(e.source, e.problems)
        return 1
    runs_dir = Path(args.against)
    if not runs_dir.is_dir():
        print(f"{runs_dir}: not a directory of runs", file=sys.stderr)
        return 2
    report = check_against(rules, runs_dir, results=args.results, service_logs=args.service_logs)
    print(format_report(report))
    if report.too_loose:
        print(
            f"\n{len(report.too_loose)} rule(s) match more than 10 % of green runs: "
            f"{', '.join(report.too_loose)}. Tighten them before use.",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import json

    from bot.adapters.store import Store, StoreError
    from bot.render.report import (
        build_report,
        render_report_html,
        render_report_md,
        report_json,
    )

    cfg = _load(args.config)
    if cfg is None:
        return 2
    db = cfg.server.data_dir / "redfix.sqlite3"
    if not db.is_file():
        print(f"no store at {db}: the bot has not run with this data_dir yet", file=sys.stderr)
        return 1

    async def build() -> str:
        store = await Store.open(db)
        try:
            if args.sweep:
                return await sweep_text(store)
            report = build_report(
                await store.triages(), await store.overrides(), cfg.gitea.url, await store.runs()
            )
        finally:
            await store.close()
        if args.format == "json":
            return json.dumps(report_json(report), indent=2)
        if args.format == "html":
            return render_report_html(report, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
        return render_report_md(report, f"{cfg.server.public_url}/report")

    async def sweep_text(store: Store) -> str:
        """The sweep's status file (md), its JSON or its page."""
        from bot.core.sweepboard import sweep_view
        from bot.model import ascii_int
        from bot.render.sweep import render_status_file, render_sweep_html, sweep_json

        if args.sweep == "latest":
            sweep = await store.latest_sweep()
        else:
            number = ascii_int(args.sweep.removeprefix("sweep-"), max_digits=9)
            sweep = await store.sweep(number) if number is not None else None
        if sweep is None:
            raise LookupError(f"no sweep {args.sweep} in {db}")
        view = await sweep_view(
            store, sweep, gitea_url=cfg.gitea.url, public_url=cfg.server.public_url
        )
        if args.format == "json":
            return json.dumps(sweep_json(view), indent=2)
        if args.format == "html":
            return render_sweep_html(view)
        return render_status_file(view)

    try:
        text = asyncio.run(build())
    except StoreError as e:
        print(f"{db}: {e}", file=sys.stderr)
        return 1
    except LookupError as e:
        print(e.args[0], file=sys.stderr)
        return 1
    print(Redactor(cfg.secrets())(text))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from bot.demo import MatrixDemo, run_demo

    configure_logging(args.log_level or "warning")
    matrix = None
    if args.matrix_homeserver:
        if not args.matrix_shared_secret:
            print(
                "--matrix-homeserver needs --matrix-shared-secret (or REDFIX_DEMO_MATRIX_SECRET)",
                file=sys.stderr,
            )
            return 2
        matrix = MatrixDemo(args.matrix_homeserver.rstrip("/"), args.matrix_shared_secret)
    try:
        return asyncio.run(run_demo(once=args.once, port=args.port, matrix=matrix))
    except KeyboardInterrupt:
        return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="redfix-bot",
        description="redfix: isolate red CI runs, classify them with evidence, verify fixes.",
    )
    p.add_argument("--version", action="version", version=f"redfix-bot {__version__}")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default=None)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="run the bot (webhook server, dispatcher, runners)")
    s.add_argument("--config", required=True, metavar="PATH", help="TOML config file")
    s.set_defaults(func=cmd_serve)

    c = sub.add_parser("check-config", help="validate a config file and list every problem")
    c.add_argument("path", metavar="PATH")
    c.set_defaults(func=cmd_check_config)

    r = sub.add_parser(
        "report",
        help="print the results table from the store, or (--sweep) a sweep's status file",
    )
    r.add_argument("--config", required=True, metavar="PATH", help="TOML config file")
    r.add_argument("--format", choices=["md", "json", "html"], default="md")
    r.add_argument(
        "--sweep",
        metavar="ID",
        default="",
        help="`latest` or a sweep's number: its table, milestones and per-failure sections "
        "(md is the STATUS-style document)",
    )
    r.set_defaults(func=cmd_report)

    h = sub.add_parser(
        "healthcheck", help="exit 0 when the running bot's /healthz (at the config's listen) is ok"
    )
    h.add_argument("--config", required=True, metavar="PATH", help="TOML config file")
    h.add_argument("--timeout", type=float, default=4.0, metavar="S", help="seconds to wait")
    h.set_defaults(func=cmd_healthcheck)

    ch = sub.add_parser(
        "check-host",
        help="check each CI host is fit to run the harness (login, dirs, commands, SFTP, probe)",
    )
    ch.add_argument("--config", required=True, metavar="PATH", help="TOML config file")
    ch.add_argument("--host", metavar="NAME", default="", help="only this host")
    ch.set_defaults(func=cmd_check_host)

    sg = sub.add_parser("signatures", help="signature rules: check them against past runs")
    sgs = sg.add_subparsers(dest="action", required=True, metavar="ACTION")
    chk = sgs.add_parser(
        "check",
        help="count each rule's matches in red and green runs; flag rules that match too "
        "many green runs",
    )
    chk.add_argument("path", metavar="PATH", help="a TOML file of [[rule]] tables")
    chk.add_argument("--against", required=True, metavar="RUNS_DIR", help="a runs directory")
    chk.add_argument(
        "--results",
        default="results.json",
        metavar="NAME",
        help='the results file in each run dir ("" : JUnit XML alone, the junit profile)',
    )
    chk.add_argument(
        "--service-logs",
        default="service*.log",
        metavar="GLOB",
        help="the names of a run dir's service logs (default: service*.log)",
    )
    chk.set_defaults(func=cmd_signatures_check)

    d = sub.add_parser(
        "demo", help="the whole loop on this machine: simulated Gitea, CI host and harness"
    )
    d.add_argument("--once", action="store_true", help="exit after the demo's commands finish")
    d.add_argument("--port", type=int, default=0, help="port for the bot (default: any free)")
    d.add_argument(
        "--matrix-homeserver",
        metavar="URL",
        default=os.environ.get("REDFIX_DEMO_MATRIX_HOMESERVER", ""),
        help="also show a Matrix room on this homeserver (one you control, e.g. a local "
        "Synapse); env REDFIX_DEMO_MATRIX_HOMESERVER",
    )
    d.add_argument(
        "--matrix-shared-secret",
        metavar="SECRET",
        default=os.environ.get("REDFIX_DEMO_MATRIX_SECRET", ""),
        help="the homeserver's registration_shared_secret, to create the demo's accounts; "
        "env REDFIX_DEMO_MATRIX_SECRET",
    )
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
