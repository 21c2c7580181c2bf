"""Config: every problem listed with its key path; env secrets win; the example documents all."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from bot.config import Config, ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]


def minimal(tmp_path: Path) -> dict[str, object]:
    key = tmp_path / "id"
    key.write_text("k")
    kh = tmp_path / "known_hosts"
    kh.write_text("h")
    return {
        "gitea": {
            "url": "https://git.example.org",
            "webhook_secret": "0123456789",
            "bot_login": "redfix",
        },
        "hosts": [
            {
                "name": "ci",
                "address": "127.0.0.1",
                "username": "u",
                "client_keys": [str(key)],
                "known_hosts": str(kh),
            }
        ],
    }


def test_minimal_config_has_sane_defaults(tmp_path: Path) -> None:
    cfg = parse_config(minimal(tmp_path), env={})
    assert cfg.server.listen == "127.0.0.1:8480"
    assert cfg.isolation.runs == 3
    assert cfg.hosts[0].capacity == 2
    assert cfg.harness.results_path("r1") == "/var/lib/cc-ci-runs/r1/results.json"
    assert cfg.gitea.status_context == "redfix/testme"


def test_every_problem_listed_with_its_key_path() -> None:
    data = {
        "server": {"listen": "nowhere", "bogus": 1},
        "gitea": {"url": "git.example.org"},
        "hosts": [
            {
                "name": "ci",
                "address": "a",
                "username": "u",
                "client_keys": [],
                "known_hosts": "k",
                "capacity": 0,
            }
        ],
        "harness": {"results": "{nope}/r.json", "env": {"RECIPE": "x", "bad name": "y"}},
        "isolation": {"runs": 99},
    }
    with pytest.raises(ConfigError) as ei:
        parse_config(data, "t.toml", env={})
    text = "\n".join(ei.value.problems)
    for fragment in [
        "server.listen: must be host:port",
        "server.bogus: unknown key",
        "gitea.url: must be an http(s) URL",
        "gitea.webhook_secret: missing (set it in the file or in the environment as "
        "REDFIX_WEBHOOK_SECRET)",
        "gitea.bot_login: missing",
        "hosts[0:ci].client_keys",
        "hosts[0:ci].capacity",
        "harness.results: only {runs_dir} and {run_id}",
        "harness.env",
        "isolation.runs",
    ]:
        assert fragment in text, f"{fragment!r} not in:\n{text}"


def test_env_secrets_win(tmp_path: Path) -> None:
    data = minimal(tmp_path)
    cfg = parse_config(
        data,
        env={"REDFIX_WEBHOOK_SECRET": "from-the-env-123", "REDFIX_GITEA_TOKEN": "tok-from-env"},
    )
    assert cfg.gitea.webhook_secret.get_secret_value() == "from-the-env-123"
    assert cfg.gitea.token is not None
    assert cfg.gitea.token.get_secret_value() == "tok-from-env"
    assert "from-the-env-123" not in repr(cfg)  # secrets never print


def test_short_webhook_secret_refused(tmp_path: Path) -> None:
    data = minimal(tmp_path)
    data["gitea"]["webhook_secret"] = "x"  # type: ignore[index]
    with pytest.raises(ConfigError, match="at least 8 characters"):
        parse_config(data, env={})


def test_toml_syntax_error_is_reported_not_raised(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[gitea\nurl = 1\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p, env={})
    assert "TOML syntax" in ei.value.problems[0]


def test_example_documents_every_key() -> None:
    text = (ROOT / "config.example.toml").read_text()
    data = tomllib.loads(text)
    cfg = parse_config(data, env={"REDFIX_WEBHOOK_SECRET": "example-secret"})
    assert isinstance(cfg, Config)

    def keys(model: type, prefix: str) -> set[str]:
        out = set()
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            ann = field.annotation
            inner = getattr(ann, "__args__", (ann,))
            sub = next((a for a in inner if hasattr(a, "model_fields")), None)
            if sub is not None and name != "env":
                out |= keys(sub, f"{prefix}{name}.")
            else:
                out.add(f"{prefix}{name}")
        return out

    for key in sorted(keys(Config, "")):
        leaf = key.rsplit(".", 1)[-1]
        if key in ("harness.env", "gitea.recipes"):
            assert f"[{key}]" in text
            continue
        assert re.search(rf"^#? ?{leaf} = ", text, re.M), f"{key} is not in config.example.toml"
