"""A past sweep for the simulated host: red run directories left where isolation looks for them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from bot.sim.runner import run_recipe_ci as harness


def seed_sweep(
    runs_dir: Path,
    scratch: Path,
    patterns: Mapping[str, str],
    scenarios: Mapping[str, Mapping[str, str]] | None = None,
    *,
    age_s: float = 3600.0,
    prefix: str = "sweep",
) -> list[str]:
    """Run the simulated harness once per recipe with the given outcome letter (e.g. "R") in a
    scratch runs dir, then move each run dir into `runs_dir`, so the recipes' own outcome
    counters there are untouched. `scenarios` (as in SIM_SCENARIOS) shapes the failures. The
    run dirs look `age_s` old (0: just finished, as a watcher sees a sweep end); their ids
    are `<prefix>-<i>-<recipe>`. Returns the run ids, oldest first."""
    scratch.mkdir(parents=True, exist_ok=True)
    runs_dir.mkdir(parents=True, exist_ok=True)
    scenario_file = scratch / "sweep-scenarios.json"
    shaped = scenarios or {}
    table = {r: {**shaped.get(r, {}), "pattern": p, "loaded": ""} for r, p in patterns.items()}
    scenario_file.write_text(json.dumps(table))
    run_ids = []
    for i, recipe in enumerate(patterns):
        run_id = f"{prefix}-{i:02d}-{recipe}"
        env = os.environ | {
            "RECIPE": recipe,
            "CCCI_RUNS_DIR": str(scratch),
            "CCCI_RUN_ID": run_id,
            "SIM_SCENARIOS": str(scenario_file),
            "SIM_STAGE_SECONDS": "0",
        }
        subprocess.run(
            [sys.executable, harness.__file__],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
            timeout=60,
        )
        shutil.move(str(scratch / run_id), str(runs_dir / run_id))
        # "Newest red run" is judged by mtime: keep the seeded order visible in it.
        stamp = time.time() - age_s + i
        os.utime(runs_dir / run_id, (stamp, stamp))
        run_ids.append(run_id)
    return run_ids
