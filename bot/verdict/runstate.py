"""The state of one finished harness run, decided from what it left behind.

A run that ended with an exit code is judged from that code and its results.json (parsed, or
why it could not be read). The SSH runner gathers those facts on the host; the decision is
here, pure, so it can be read and tested without a host: it never guesses a green or a red
that the results do not back.
"""

from __future__ import annotations

from bot.model import ResultsSummary, RunState
from bot.model.profile import CCCI, HarnessProfile

# cc-ci's own exit codes (its profile's, bot.model.profile.CCCI_EXIT_CODES).
DEADLINE_EXIT = 142  # the harness's deadline fired: the run took too long, not red or green
TERMINATED_EXIT = 143  # SIGTERM: the run was stopped and torn down, its outcome is unknown


def run_state(
    code: int, summary: ResultsSummary | None, missing: str, profile: HarnessProfile = CCCI
) -> tuple[RunState, str]:
    """The run's state and the problem to record with it, from its exit code and results,
    read by what the harness's `profile` says each exit code means.

    `summary` is the parsed results, or None with `missing` saying why there are none.
    In order:
    - a deadline exit is a DEADLINE (with `missing`, if the results could not be read);
    - a terminated exit, a death by signal (a negative code) and an `incomplete` exit (a
      usage or internal error of the test runner) are INCOMPLETE, whatever the results say;
    - without results any other exit is INCOMPLETE: the code alone does not say which stage
      failed, and a green exit without results is not called green;
    - a green exit is GREEN only if the results agree; results that report failed stages make
      it RED, with a problem naming them;
    - any other exit is RED; results that report no failed stage are named as a problem.
    """
    meaning = profile.exit_code(code)
    if meaning.kind == "deadline":
        return RunState.DEADLINE, missing
    if meaning.kind == "terminated":
        return RunState.INCOMPLETE, f"terminated: harness exit {code} ({meaning.meaning})"
    if code < 0:
        return RunState.INCOMPLETE, f"harness {meaning.meaning}"
    if meaning.kind == "incomplete":
        return RunState.INCOMPLETE, f"incomplete: exit {code}, {meaning.meaning}"
    if summary is None:
        return RunState.INCOMPLETE, f"{missing} (harness exit {code})"
    if meaning.kind == "green":
        if summary.red:
            failed = ", ".join(summary.failed_stages)
            return (
                RunState.RED,
                f"harness exited {code} but its results report failed stages: {failed}",
            )
        return RunState.GREEN, ""
    if not summary.red:
        return RunState.RED, f"harness exit {code} but its results report no failed stage"
    return RunState.RED, ""
