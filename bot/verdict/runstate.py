"""The state of one finished harness run, decided from what it left behind.

A run that ended with an exit code is judged from that code and its results.json (parsed, or
why it could not be read). The SSH runner gathers those facts on the host; the decision is
here, pure, so it can be read and tested without a host: it never guesses a green or a red
that the results do not back.
"""

from __future__ import annotations

from bot.model import ResultsSummary, RunState, exit_meaning

# The harness's own exit codes (cc-ci conventions, bot.model.EXIT_MEANINGS).
DEADLINE_EXIT = 142  # the harness's deadline fired: the run took too long, not red or green
TERMINATED_EXIT = 143  # SIGTERM: the run was stopped and torn down, its outcome is unknown


def run_state(code: int, summary: ResultsSummary | None, missing: str) -> tuple[RunState, str]:
    """The run's state and the problem to record with it, from its exit code and results.

    `summary` is the parsed results.json, or None with `missing` saying why there is none.
    In order:
    - the deadline exit is a DEADLINE (with `missing`, if the results could not be read);
    - the SIGTERM exit and a death by signal (a negative code) are INCOMPLETE;
    - without results any other exit is INCOMPLETE: the code alone does not say which stage
      failed, and a green exit without results is not called green;
    - exit 0 is GREEN only if the results agree; results that report failed stages make it
      RED, with a problem naming them;
    - any other exit is RED; results that report no failed stage are named as a problem.
    """
    if code == DEADLINE_EXIT:
        return RunState.DEADLINE, missing
    if code == TERMINATED_EXIT:
        return RunState.INCOMPLETE, f"terminated: harness exit 143 ({exit_meaning(143)})"
    if code < 0:
        return RunState.INCOMPLETE, f"harness {exit_meaning(code)}"
    if summary is None:
        return RunState.INCOMPLETE, f"{missing} (harness exit {code})"
    if code == 0:
        if summary.red:
            failed = ", ".join(summary.failed_stages)
            return (
                RunState.RED,
                f"harness exited 0 but results.json reports failed stages: {failed}",
            )
        return RunState.GREEN, ""
    if not summary.red:
        return RunState.RED, f"harness exit {code} but results.json reports no failed stage"
    return RunState.RED, ""
