"""The adapters ring: everything that talks to the world, behind the core's ports.

`gitea/` (webhook door, payloads, API client, the Forge port, the poll sweep), `matrix/` (sync
loop, sender, payloads), `ssh/` (connection, detached runs on a host, remote files, host
scripts), `store/` (SQLite: schema and one part per aggregate), `web/` (pages, health,
metrics, the server), `outbox` (everything said, stored first, delivered in order), `ingress`
(the one decoder of a stored delivery), `config` (the TOML file), `metrics`, `preflight`.
Only the composition root (bot.app) wires them to the core.
"""
