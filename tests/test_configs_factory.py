"""The tests' config factory (tests/configs.py): its documents parse, overrides deep-merge into
them, a wrong override reaches the parser and is refused, and to_toml writes what it built."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from bot.adapters.config import ConfigError, parse_config
from tests.configs import (
    BOT_LOGIN,
    GITEA_TOKEN,
    PUBLIC_URL,
    WEBHOOK_SECRET,
    config_doc,
    merged,
    minimal_doc,
    to_toml,
)
from tests.conftest import ConfigFactory


def test_the_standard_document_parses_with_the_suites_defaults(
    tmp_path: Path, make_config: ConfigFactory
) -> None:
    cfg = make_config()
    assert cfg.server.host == "127.0.0.1"
    assert cfg.server.public_url == PUBLIC_URL
    assert cfg.server.data_dir == tmp_path / "data"
    assert cfg.gitea.url == "https://git.example.org"
    assert cfg.gitea.token is not None
    assert cfg.gitea.token.get_secret_value() == GITEA_TOKEN
    assert cfg.gitea.webhook_secret.get_secret_value() == WEBHOOK_SECRET
    assert cfg.gitea.bot_login == BOT_LOGIN
    assert cfg.gitea.allowed_orgs == ("recipe-maintainers",)
    assert cfg.gitea.poll_interval == 0
    assert [h.name for h in cfg.hosts] == ["ci"]
    assert cfg.isolation.runs == 3
    assert cfg.matrix is None


def test_the_minimal_document_parses_and_takes_every_other_default(tmp_path: Path) -> None:
    doc = minimal_doc(tmp_path)
    assert sorted(doc) == ["gitea", "hosts"]
    cfg = parse_config(doc, env={})
    assert cfg.gitea.token is None
    assert cfg.server.public_url == "http://127.0.0.1:8480"


def test_an_override_deep_merges_into_its_section(make_config: ConfigFactory) -> None:
    cfg = make_config(
        gitea={"poll_interval": 5, "recipes": {"acme/widgets": "widgets"}},
        server={"health_interval_s": 0},
    )
    assert cfg.gitea.poll_interval == 5
    assert cfg.gitea.recipes == {"acme/widgets": "widgets"}
    # The rest of each section is the default's, untouched by the override.
    assert cfg.gitea.bot_login == BOT_LOGIN
    assert cfg.gitea.allowed_orgs == ("recipe-maintainers",)
    assert cfg.server.health_interval_s == 0
    assert cfg.server.public_url == PUBLIC_URL


def test_none_removes_a_key_or_a_section(make_config: ConfigFactory) -> None:
    cfg = make_config(server={"public_url": None}, isolation=None)
    assert cfg.server.public_url == "http://127.0.0.1:8480"  # the schema's default again
    assert cfg.isolation.runs == 3


def test_merging_shares_nothing_with_its_inputs() -> None:
    base = {"gitea": {"allowed_orgs": ["a"]}}
    override = {"gitea": {"repos": ["o/r"]}}
    out = merged(base, override)
    out["gitea"]["allowed_orgs"].append("b")
    out["gitea"]["repos"].append("o/s")
    assert base == {"gitea": {"allowed_orgs": ["a"]}}
    assert override == {"gitea": {"repos": ["o/r"]}}


def test_a_wrong_override_is_refused_by_the_parser(make_config: ConfigFactory) -> None:
    """Positive control: overrides reach parse_config, so a bad one is an error, not ignored."""
    with pytest.raises(ConfigError) as ei:
        make_config(server={"listen": "nowhere"}, gitea={"bogus": 1}, isolation={"runs": 99})
    text = "\n".join(ei.value.problems)
    for fragment in ["server.listen: must be host:port", "gitea.bogus: unknown key", "isolation"]:
        assert fragment in text, text


def test_to_toml_writes_the_document_it_was_given(tmp_path: Path) -> None:
    doc = config_doc(
        tmp_path,
        harness={"env": {"SIM_STAGE_SECONDS": "0.5"}, "kill_grace_s": 2.0, "evidence": ["x"]},
        gitea={"verify_on_push": True},
    )
    assert tomllib.loads(to_toml(doc)) == doc
