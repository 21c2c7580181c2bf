"""Scrubbing secrets out of anything the bot posts or serves, before it leaves the process."""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "[redacted]"
_PATTERNS = (
    # KEY=value / KEY: value where the key names a secret (TOKEN, PASSWORD, SECRET, API_KEY ...)
    re.compile(
        r"(?i)\b([A-Z0-9_.-]*(?:TOKEN|PASSWORD|PASSWD|SECRET|API_?KEY|PRIVATE_KEY)[A-Z0-9_.-]*)"
        r"(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|\S+)"
    ),
    re.compile(r"(?i)\b(authorization:\s*(?:bearer|token|basic)\s+)(\S+)"),
    re.compile(r"(?i)\b(bearer\s+)([A-Za-z0-9._~+/=-]{8,})"),
)
_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.S
)


class Redactor:
    """Replaces configured secret values and secret-looking assignments with a mask."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first so a secret that contains another is masked whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, MASK)
        text = _PRIVATE_KEY.sub(MASK, text)
        text = _PATTERNS[0].sub(lambda m: f"{m[1]}{m[2]}{MASK}", text)
        text = _PATTERNS[1].sub(lambda m: f"{m[1]}{MASK}", text)
        return _PATTERNS[2].sub(lambda m: f"{m[1]}{MASK}", text)
