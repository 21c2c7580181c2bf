"""The verdict ring: pure judgement of runs — results, run state, outcome, cause, confidence.

`judge.judge` is the one place a verdict is made, from the reference run, the runs and the
human verdict; it uses `outcome` (flake, genuine, changed, intermittent, inconclusive),
`causes` (the documented chains of cause rules, with `logwatch` and the signature rules of
`rules` matched through `prefilter`), `confidence` and `advice`. `results` reads the harness's
results.json and JUnit; `runstate` turns an exit code and results into a run state; `corpus`
checks the signature rules against a corpus of real runs. No I/O here but reading the
packaged rules and the files `corpus` is pointed at.
"""
