"""Swagger path templates matched against raw request paths, the way Gitea's router does."""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import unquote


class PathTemplate:
    """One swagger path template, matched segment by segment like Gitea's router."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.names: list[str] = []
        parts: list[str] = []
        rank: list[int] = []
        for seg in template.strip("/").split("/"):
            pieces = re.split(r"(\{[^}]+\})", seg)
            regex = ""
            for piece in pieces:
                if piece.startswith("{") and piece.endswith("}"):
                    name = piece[1:-1]
                    self.names.append(name)
                    # {filepath} is the one parameter that spans directories
                    regex += "(.+)" if name == "filepath" else "([^/]+?)"
                else:
                    regex += re.escape(piece)
            params = sum(1 for p in pieces if p.startswith("{"))
            literal = any(p and not p.startswith("{") for p in pieces)
            # a fixed segment beats a mixed one ("{index}.{diffType}") beats a bare parameter,
            # so ".../issues/comments" is never read as issue number "comments"
            rank.append(0 if not params else 1 if literal else 2)
            parts.append(regex)
        self.rank = tuple(rank)
        self._re = re.compile("^/" + "/".join(parts) + "$")

    def match(self, raw_path: str) -> dict[str, str] | None:
        m = self._re.match(raw_path)
        if m is None:
            return None
        return {n: unquote(v) for n, v in zip(self.names, m.groups(), strict=True)}


def best_match(
    templates: Sequence[PathTemplate], raw_path: str
) -> tuple[PathTemplate, dict[str, str]] | None:
    """The template a path hits and its parameters; the most literal one when several match."""
    found = [(t, p) for t in templates if (p := t.match(raw_path)) is not None]
    if not found:
        return None
    return min(found, key=lambda tp: tp[0].rank)
