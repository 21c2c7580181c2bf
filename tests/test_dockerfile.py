"""The Dockerfile's promises that can be checked without a Docker daemon (scripts/test also runs
hadolint on it): a pinned base, the lock installed with hashes before the app is copied, every
file it copies let through by .dockerignore, and a health check that reads the same config as
the server."""

from __future__ import annotations

import fnmatch
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) for every instruction, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n(\s*#.*\n)*", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def ignored(path: str, rules: list[str]) -> bool:
    """Docker's .dockerignore semantics for the patterns used here: the last match wins, `!`
    re-includes, a directory pattern covers what is under it."""
    verdict = False
    for rule in rules:
        negate = rule.startswith("!")
        pattern = rule.removeprefix("!").rstrip("/")
        under = path == pattern or path.startswith(pattern + "/")
        if fnmatch.fnmatch(path, pattern) or under or fnmatch.fnmatch(path, f"**/{pattern}"):
            verdict = not negate
    return verdict


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [x.strip() for x in lines if x.strip() and not x.startswith("#")]


def test_ignored_follows_the_last_matching_rule() -> None:
    # the positive control for the context test below
    rules = ["*", "!bot/", "**/__pycache__"]
    assert ignored("tests/test_x.py", rules)
    assert not ignored("bot/cli.py", rules)
    assert ignored("bot/__pycache__", rules)


def test_every_copied_file_is_in_the_build_context() -> None:
    rules = dockerignore()
    copied = []
    for word, args in instructions():
        if word == "COPY" and "--from=" not in args:
            *sources, _dest = shlex.split(args)
            copied += sources
    assert "requirements/runtime.txt" in copied
    for src in copied:
        assert (ROOT / src).exists(), src
        assert not ignored(src, rules), f"{src} is copied but .dockerignore leaves it out"
    # and what the image never needs stays out of the context
    for heavy in (".git", ".venv", "tests/conftest.py", "requirements/lock.txt"):
        assert ignored(heavy, rules), heavy


def test_base_is_a_pinned_python_patch_release_on_a_named_debian() -> None:
    bases = [args.split()[0] for word, args in instructions() if word == "FROM"]
    external = [b for b in bases if ":" in b]
    assert len(external) == 2, bases  # the deps stage and the runtime stage
    for base in external:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-(bookworm|trixie)", base), base
    assert len(set(external)) == 1  # the venv's interpreter is the runtime's


def test_dependencies_are_installed_from_the_lock_before_the_app_is_copied() -> None:
    steps = instructions()
    lock_install = next(
        i for i, (w, a) in enumerate(steps) if w == "RUN" and "--require-hashes" in a
    )
    assert "-r /tmp/runtime.txt" in steps[lock_install][1]
    first_app_copy = next(
        i for i, (w, a) in enumerate(steps) if w == "COPY" and a.split()[0] in ("bot", ".")
    )
    assert lock_install < first_app_copy


def test_runs_as_non_root_with_a_health_check_on_the_served_config() -> None:
    steps = dict(instructions())  # the last of each kind: the runtime stage's
    user = steps["USER"].split(":")[0]
    assert user not in ("root", "0")
    cmd = shlex.split(steps["CMD"].strip("[]").replace(",", " "))
    health = shlex.split(
        steps["HEALTHCHECK"].split("CMD", 1)[1].strip().strip("[]").replace(",", " ")
    )
    assert health[:2] == ["redfix-bot", "healthcheck"]
    assert health[health.index("--config") + 1] == cmd[cmd.index("--config") + 1]
