"""The fix route each finding advises, as the texts a verdict shows.

Advice always names a fix route — a recipe PR, a harness stabilisation, or a test PR under
review — and never weakening a test (a signature rule's own advice is checked for that when
its rules are loaded, bot.verdict.rules).
"""

from __future__ import annotations

from types import MappingProxyType

from bot.model.profile import HarnessProfile

TIMEOUT_ADVICE = (
    "Find what the run was waiting on when the deadline fired (the last convergence lines): a "
    "service that never converges needs a recipe PR; one that converges slowly only under load "
    "needs a harness PR (serialise heavy deploys, more deploy headroom). Re-run alone to tell."
)
HARNESS_ADVICE = (
    "Harness PR (cc-ci, on a branch): fix the harness fault the evidence shows and verify it "
    "with a re-run; the recipe and its tests are not at fault."
)
CONVERGENCE_ADVICE = (
    "Recipe PR: make the services converge — read docker service ps --no-trunc and docker "
    "service logs for the failing task (image, healthcheck, config, resources), fix the "
    "recipe, and verify with !testme."
)
LIFECYCLE_ADVICE = (
    "Recipe PR fixing what the failing {stages} stage exercises (hooks, volumes, config), "
    "after a re-run alone rules out load; verify with !testme."
)
STALE_TEST_ADVICE = (
    "Suspected stale test: check what the app does now. If the test is out of date, a test PR "
    "under review (the --with-tests gate) or a PR comment; if the app is wrong, a recipe PR. "
    "Never weaken the test to turn it green."
)
UNKNOWN_ADVICE = (
    "No rule explains this failure: read the failing assertion, the log and the service logs, "
    "and add a signature rule once the cause is known."
)
LOAD_ADVICE = (
    "Harness stabilisation: find the step that races under load (readiness, settling, backup "
    "and restore timing) and add a settle, verify or retry step in cc-ci, or serialise the "
    "recipe's heavy steps; verify with repeated runs under load, every repeat green."
)
NOT_REPRODUCED_ADVICE = (
    "Re-run under load (alongside 2–3 concurrent deploys) to reproduce the sweep failure "
    "before choosing a fix; until then no cause is claimed."
)
INCONCLUSIVE_ADVICE = (
    "Re-run alone once the host is healthy; no cause is claimed until runs complete."
)

# The same fix routes for any other harness (the `junit` profile): no recipes, no docker, no
# cc-ci, in the words of the profile (`{unit}`, `{unit_fix}`, `{harness_fix}`).
GENERIC = MappingProxyType(
    {
        "timeout": (
            "Find what the run was waiting on when the deadline fired (the last lines of its "
            "log): a step that never finishes needs {unit_fix}; one that is only slow under "
            "load needs {harness_fix} (more headroom, fewer parallel runs). Re-run alone to tell."
        ),
        "harness": (
            "{harness_fix}: fix the fault in the harness's own code the evidence shows and "
            "verify it with a re-run; the {unit} and its tests are not at fault."
        ),
        "convergence": (
            "{unit_fix}: make the services the tests need come up and stay up, then verify "
            "with !testme."
        ),
        "lifecycle": (
            "{unit_fix} for what the failing {{stages}} stage exercises, after a re-run alone "
            "rules out load; verify with !testme."
        ),
        "stale_test": (
            "Suspected stale test: check what the {unit} does now. If the test is out of date, "
            "a test PR under review or a PR comment; if the {unit} is wrong, {unit_fix}. Never "
            "weaken the test to turn it green."
        ),
        "unknown": (
            "No rule explains this failure: read the failing assertion and the log, and add a "
            "signature rule once the cause is known."
        ),
        "load": (
            "Stabilise what races under load: find the step that depends on timing (readiness, "
            "shared state, ports, files) and make it wait for or isolate what it needs, in "
            "{harness_fix} or {unit_fix}; verify with repeated runs under load, every repeat "
            "green."
        ),
        "not_reproduced": (
            "Re-run under load (beside other runs) to reproduce the failure before choosing a "
            "fix; until then no cause is claimed."
        ),
        "inconclusive": INCONCLUSIVE_ADVICE,
    }
)
CCCI = MappingProxyType(
    {
        "timeout": TIMEOUT_ADVICE,
        "harness": HARNESS_ADVICE,
        "convergence": CONVERGENCE_ADVICE,
        "lifecycle": LIFECYCLE_ADVICE,
        "stale_test": STALE_TEST_ADVICE,
        "unknown": UNKNOWN_ADVICE,
        "load": LOAD_ADVICE,
        "not_reproduced": NOT_REPRODUCED_ADVICE,
        "inconclusive": INCONCLUSIVE_ADVICE,
    }
)


def advice(profile: HarnessProfile, kind: str) -> str:
    """The fix route of `kind` in the profile's words (`lifecycle` keeps `{stages}`)."""
    if profile.words.advice == "cc-ci":
        return CCCI[kind]
    w = profile.words
    text = GENERIC[kind].format(unit=w.unit, unit_fix=w.unit_fix, harness_fix=w.harness_fix)
    return text[:1].upper() + text[1:]  # a route may open with the profile's own words
