"""The bot's configuration documents for tests, built in one place.

A test used to write its own near-copy of the document (the rig's, a subprocess's TOML, the
burst's, the smallest valid one); a default changed in one copy drifted from the others. Here
each document is the standard one plus the test's overrides, deep-merged, so a test names
only what it is about. Documents are plain dicts of TOML's types, as `tomllib` would decode
them: `parse_config` takes them as they are and `to_toml` writes them for a bot subprocess.

Merging: a table merges key by key into the default's table, any other value replaces the
default, and None removes the key (TOML has no null, so None never means a value).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from bot.adapters.config import Config, parse_config
from bot.sim.gitea import GiteaSim
from tests.sshd import Sshd, free_port

# The rig's credentials: the fake Gitea is started with the same token and login.
WEBHOOK_SECRET = "e2e-webhook-secret-0123"
GITEA_TOKEN = "e2e-gitea-token-abcdef0123456789"
BOT_LOGIN = "redfix"

GITEA_URL = "https://git.example.org"
PUBLIC_URL = "https://redfix.example.org"
# The smallest document's secret: long enough to be accepted, and not the rig's.
MINIMAL_SECRET = "0123456789"


def merged(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` deep-merged in; neither is changed, nothing is shared with them."""
    out = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(dict(value) if isinstance(value, Mapping) else value)
    return out


def loopback_listen() -> str:
    """A listen address on a free loopback port, so tests running at once never collide."""
    return f"127.0.0.1:{free_port()}"


def host_entry(key: Path, known_hosts: Path, **fields: Any) -> dict[str, Any]:
    """One [[hosts]] table named `ci` with these key and known_hosts files; `fields` add to it."""
    return {"name": "ci", "client_keys": [str(key)], "known_hosts": str(known_hosts), **fields}


def placeholder_host(tmp_path: Path) -> dict[str, Any]:
    """A host whose key files exist but hold no key: enough for the schema, which reads only
    their paths (the machine checks would refuse them; see machine_doc)."""
    key, known_hosts = tmp_path / "id", tmp_path / "known_hosts"
    key.write_text("k")
    known_hosts.write_text("h")
    return host_entry(key, known_hosts, address="127.0.0.1", username="u")


def minimal_doc(tmp_path: Path, **sections: Mapping[str, Any] | None) -> dict[str, Any]:
    """The smallest valid document: [gitea]'s required keys and one placeholder host (every
    other section takes its defaults); `sections` are deep-merged over it."""
    doc = {
        "gitea": {"url": GITEA_URL, "webhook_secret": MINIMAL_SECRET, "bot_login": BOT_LOGIN},
        "hosts": [placeholder_host(tmp_path)],
    }
    return merged(doc, sections)


def config_doc(
    tmp_path: Path,
    *,
    gitea_url: str = GITEA_URL,
    hosts: Iterable[Mapping[str, Any]] | None = None,
    harness: Mapping[str, Any] | None = None,
    **sections: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The standard document of the suite's running bots: a free loopback port, the store in
    `tmp_path/data`, the rig's Gitea credentials, no polling, three isolated runs. `hosts`
    default to one placeholder host, `harness` to the section's defaults; `sections`
    (server=, gitea=, matrix=, isolation=, ...) are deep-merged over the document."""
    doc: dict[str, Any] = {
        "server": {
            "listen": loopback_listen(),
            "public_url": PUBLIC_URL,
            "data_dir": str(tmp_path / "data"),
        },
        "gitea": {
            "url": gitea_url,
            "token": GITEA_TOKEN,
            "webhook_secret": WEBHOOK_SECRET,
            "bot_login": BOT_LOGIN,
            "allowed_orgs": ["recipe-maintainers"],
            # No poller: tests deliver the webhooks themselves, when they choose.
            "poll_interval": 0,
        },
        "hosts": [dict(h) for h in hosts] if hosts is not None else [placeholder_host(tmp_path)],
    }
    if harness is not None:
        doc["harness"] = dict(harness)
    doc["isolation"] = {"runs": 3}
    return merged(doc, sections)


def rig_doc(
    tmp_path: Path,
    sshd: Sshd,
    gitea: GiteaSim,
    runs_dir: Path,
    /,
    *,
    host: Mapping[str, Any] | None = None,
    harness: Mapping[str, Any] | None = None,
    **sections: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The standard document for a bot on the real sshd running the simulated harness, talking
    to this fake Gitea. `host` changes fields of the sshd's host, `harness` of its harness
    (`env` is merged over a quick stage time); `sections` as for config_doc (the arguments
    before them are positional, so `gitea=` is the [gitea] section's override)."""
    harness = dict(harness or {})
    env = {"SIM_STAGE_SECONDS": "0.02", **harness.pop("env", {})}
    return config_doc(
        tmp_path,
        gitea_url=gitea.url,
        hosts=[sshd.host_config(**(host or {})).model_dump(mode="json")],
        harness=sshd.harness_config(runs_dir=str(runs_dir), env=env, **harness).model_dump(
            mode="json", exclude_none=True
        ),
        **sections,
    )


def machine_doc(key: Path, known_hosts: Path, data_dir: Path) -> dict[str, Any]:
    """Only what the machine checks read (bot/adapters/preflight.py): one host's key and
    known_hosts files, a data_dir and a free loopback listen address."""
    return {
        "server": {"data_dir": str(data_dir), "listen": loopback_listen()},
        "hosts": [host_entry(key, known_hosts)],
    }


def as_config(doc: dict[str, Any], source: str = "<test>") -> Config:
    """The parsed Config of a test's document; the environment's REDFIX_* secrets stay out."""
    return parse_config(doc, source, env={})


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML for {type(v).__name__}")


def to_toml(data: Mapping[str, Any]) -> str:
    """Enough TOML for a redfix config: tables, arrays of tables, scalars, lists, inline maps."""
    out: list[str] = []
    for section, body in data.items():
        tables = body if isinstance(body, list) else [body]
        for table in tables:
            out.append(f"[[{section}]]" if isinstance(body, list) else f"[{section}]")
            out += [f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None]
            out.append("")
    return "\n".join(out)
