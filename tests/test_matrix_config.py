"""[matrix] is optional: absent, the bot is Gitea-only; present, it is checked like the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.adapters.config import ConfigError, parse_config
from tests.configs import minimal_doc

MATRIX = {
    "homeserver": "https://matrix.example.org/",
    "user_id": "@redfix:example.org",
    "rooms": ["#ci:example.org", "!abc:example.org"],
    "allowed_users": ["@alice:example.org"],
}


def with_matrix(tmp_path: Path, **matrix: Any) -> dict[str, Any]:
    return minimal_doc(tmp_path, matrix={**MATRIX, **matrix})


def test_without_a_matrix_section_the_env_adds_none(tmp_path: Path) -> None:
    cfg = parse_config(minimal_doc(tmp_path), env={"REDFIX_MATRIX_PASSWORD": "pw-from-env"})
    assert cfg.matrix is None


def test_env_secrets_fill_the_section_and_are_redacted(tmp_path: Path) -> None:
    cfg = parse_config(with_matrix(tmp_path), env={"REDFIX_MATRIX_PASSWORD": "pw-from-env"})
    assert cfg.matrix is not None
    assert cfg.matrix.homeserver == "https://matrix.example.org"
    assert cfg.matrix.password is not None
    assert cfg.matrix.password.get_secret_value() == "pw-from-env"
    assert "pw-from-env" in cfg.secrets()
    assert cfg.matrix.min_power_level is None
    assert cfg.matrix.notify_room == ""


def test_matrix_problems_are_listed_with_their_keys(tmp_path: Path) -> None:
    data = with_matrix(
        tmp_path,
        homeserver="matrix.example.org",
        user_id="redfix",
        rooms=["ci"],
        allowed_users=["alice"],
    )
    with pytest.raises(ConfigError) as ei:
        parse_config(data, env={})
    text = "\n".join(ei.value.problems)
    for fragment in [
        "matrix.homeserver: must be an http(s) URL",
        "matrix.user_id",
        "matrix.rooms[0]",
        "matrix.allowed_users[0]",
    ]:
        assert fragment in text, text
    with pytest.raises(ConfigError, match="set access_token or password"):
        parse_config(with_matrix(tmp_path), env={})
