"""A fake Gitea 1.26.3 API server (aiohttp) that checks every request against the official spec.

The package's parts, each with one job: spec.py (with schema.py and paths.py) is the checker,
the facts of Gitea's API and how a request is matched and judged against them; world.py (with
records.py and faults.py) is the state the fake holds and how tests seed and inspect it;
shapes.py and shapes_issues.py build Gitea's JSON; server.py is GiteaSim, the aiohttp app and
its request pipeline, whose handlers are in routes_issues.py and routes_repos.py (on the
helpers of handling.py); guard.py catches the merges, approvals and closes redfix must never
attempt. Everything tests, the demo and the benchmarks use is importable from here.
"""

from bot.sim.gitea.faults import WRITE_METHODS
from bot.sim.gitea.records import (
    SimComment,
    SimFile,
    SimReaction,
    SimRequest,
    SimStatus,
    SimWrite,
)
from bot.sim.gitea.schema import SPEC_EXTRA_KEYS, SPEC_OMITEMPTY, SchemaChecker
from bot.sim.gitea.server import SIM_TOKEN, GiteaSim
from bot.sim.gitea.shapes import Json
from bot.sim.gitea.spec import (
    API_PREFIX,
    GITEA_VERSION,
    OMITTED,
    SPEC_FACTS,
    GiteaSpec,
    SpecRoute,
)

__all__ = [
    "API_PREFIX",
    "GITEA_VERSION",
    "OMITTED",
    "SIM_TOKEN",
    "SPEC_EXTRA_KEYS",
    "SPEC_FACTS",
    "SPEC_OMITEMPTY",
    "WRITE_METHODS",
    "GiteaSim",
    "GiteaSpec",
    "Json",
    "SchemaChecker",
    "SimComment",
    "SimFile",
    "SimReaction",
    "SimRequest",
    "SimStatus",
    "SimWrite",
    "SpecRoute",
]
