"""`python -m bench [--quick] [--only NAME ...]`: run the benchmarks and print their figures."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import asdict
from pathlib import Path

from bench import ack, evidence, ingest, redact, schedule, stream, sweep
from bench.common import Report, Settings, machine

Benchmark = Callable[[Settings], Coroutine[None, None, Report]]
# In the order; each runs on an event loop of its own.
BENCHMARKS: dict[str, Benchmark] = {
    "ingest": ingest.run,
    "ack": ack.run,
    "stream": stream.run,
    "schedule": schedule.run,
    "evidence": evidence.run,
    "redact": redact.run,
    "sweep": sweep.run,
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes: seconds per benchmark")
    p.add_argument(
        "--only",
        nargs="+",
        choices=list(BENCHMARKS),
        metavar="NAME",
        default=[],
        help=f"run only these: {', '.join(BENCHMARKS)}",
    )
    p.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory (logs)")
    return p.parse_args(argv)


def _as_json(report: Report) -> dict[str, object]:
    doc = asdict(report)
    doc["targets"] = [asdict(t) | {"met": t.met, "text": t.describe()} for t in report.targets]
    return doc


def run_one(name: str, quick: bool, root: Path, keep: bool = False) -> Report:
    """One benchmark in a scratch directory of its own, on a fresh event loop."""
    tmp = root / name
    tmp.mkdir()
    try:
        return asyncio.run(BENCHMARKS[name](Settings(quick=quick, tmp=tmp)))
    finally:
        # 1 GiB logs and 200 MB corpora must not pile up across benchmarks.
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    names = args.only or list(BENCHMARKS)
    facts = machine()
    print("redfix benchmarks" + (" (quick)" if args.quick else ""))
    for key, value in facts.items():
        print(f"  {key}: {value}")
    print(f"  command: python -m bench {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(flush=True)
    reports: list[Report] = []
    crashed: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="redfix-bench-"))
    try:
        for name in names:
            started = time.monotonic()
            try:
                report = run_one(name, args.quick, root, args.keep)
            except Exception:
                # One broken benchmark must not hide the others' figures.
                crashed.append(name)
                print(f"== {name}: CRASHED\n{traceback.format_exc()}", flush=True)
                continue
            reports.append(report)
            print(report.render())
            print(f"  ({time.monotonic() - started:.1f} s)\n", flush=True)
    finally:
        if args.keep:
            print(f"scratch directory kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    if args.json is not None:
        doc = {"machine": facts, "quick": args.quick, "reports": [_as_json(r) for r in reports]}
        args.json.write_text(json.dumps(doc, indent=2, default=str))
    missed = [f"{r.name}: {t.what}" for r in reports for t in r.targets if not t.met]
    failed = [f"{r.name}: {what}" for r in reports for what, ok in r.checks.items() if not ok]
    print(
        f"targets met: {sum(t.met for r in reports for t in r.targets)}"
        f"/{sum(len(r.targets) for r in reports)}"
    )
    for m in missed:
        print(f"  not met: {m}")
    for f in failed:
        print(f"  CHECK FAILED: {f}")
    for name in crashed:
        print(f"  CRASHED: {name}")
    # Missed targets are findings, not errors; a failed check (something lost) is an error.
    return 1 if failed or crashed else 0


if __name__ == "__main__":
    raise SystemExit(main())
