"""Secrets never leave the process: configured values and secret-looking assignments."""

from __future__ import annotations

import pytest

from bot.redact import MASK, Redactor


@pytest.mark.parametrize(
    ("text", "secret_part"),
    [
        ("GITEA_TOKEN=abc123def", "abc123def"),
        ("export DB_PASSWORD='hunter two'", "hunter two"),
        ("api_key: sk-live-0123456789", "sk-live-0123456789"),
        ("Authorization: token 0123456789abcdef", "0123456789abcdef"),
        ("curl -H 'Authorization: Bearer eyJhbGciOi.x.y'", "eyJhbGciOi.x.y"),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n"
            "-----END OPENSSH PRIVATE KEY-----",
            "b3BlbnNzaC1rZXk",
        ),
    ],
)
def test_patterns(text: str, secret_part: str) -> None:
    out = Redactor()(text)
    assert secret_part not in out
    assert MASK in out


def test_configured_secret_anywhere() -> None:
    r = Redactor(["s3cret-webhook", "tok"])
    out = r("the hook s3cret-webhook and the word tok stay")
    assert "s3cret-webhook" not in out
    assert "tok" in out  # too short to be a secret worth masking: would shred normal text


def test_harmless_text_is_untouched() -> None:
    text = "test_restore.py::test_restore_returns_state FAILED (token count 3)"
    assert Redactor(["s3cret-webhook"])(text) == text
