"""The core ring: the services that run redfix's loop, seeing the world only through ports.

A stored delivery is taken through `dispatch` (the fair, bounded loop) and `admission` (record,
authorize with `access`, acknowledge, decide through the `handlers` registry); `jobs` turns each
plan into an owned task: `isolation` (with `rounds`, `evidence`), `testme`, `fixloop`,
`sweepreport`, every run an `attempt` on a slot of the `scheduler`. The core imports the model,
the verdict and render rings and the registry; the adapters reach it only through the
Protocols of `ports` and `logs`.
"""
