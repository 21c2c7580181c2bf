"""The command line: check-config explains, --version answers, the demo runs the whole loop."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot import __version__

ROOT = Path(__file__).resolve().parents[1]


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REDFIX_")}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=clean | (env or {}),
        timeout=timeout,
        check=False,
    )


def test_version() -> None:
    r = cli("--version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"redfix-bot {__version__}"


def test_check_config_on_the_example_explains_what_is_missing() -> None:
    r = cli("check-config", "config.example.toml")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert "gitea.webhook_secret: missing" in r.stderr
    assert "REDFIX_WEBHOOK_SECRET" in r.stderr


def test_check_config_lists_file_problems_once_secrets_are_given() -> None:
    r = cli("check-config", "config.example.toml", env={"REDFIX_WEBHOOK_SECRET": "s" * 16})
    assert r.returncode == 1
    assert "hosts[0:cc-ci].client_keys[0]: no such file: /etc/redfix/id_ed25519" in r.stderr
    assert "hosts[0:cc-ci].known_hosts: no such file" in r.stderr
    assert "s" * 16 not in r.stdout + r.stderr


def test_check_config_accepts_a_good_config(tmp_path: Path) -> None:
    key, kh = tmp_path / "id", tmp_path / "known_hosts"
    key.write_text("x")
    kh.write_text("x")
    text = (ROOT / "config.example.toml").read_text()
    text = text.replace("/etc/redfix/id_ed25519", str(key)).replace(
        "/etc/redfix/known_hosts", str(kh)
    )
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    r = cli("check-config", str(cfg), env={"REDFIX_WEBHOOK_SECRET": "a-long-secret"})
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout
    assert "a-long-secret" not in r.stdout


@pytest.mark.parametrize("content", ["[gitea\n", "\xff", ""])
def test_check_config_never_tracebacks(tmp_path: Path, content: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(content, encoding="latin-1")
    r = cli("check-config", str(cfg))
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert str(cfg) in r.stderr


def test_serve_with_a_bad_config_exits_without_traceback(tmp_path: Path) -> None:
    r = cli("serve", "--config", str(tmp_path / "missing.toml"))
    assert r.returncode == 2
    assert "cannot read" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_demo_once_shows_real_verdicts() -> None:
    r = cli("demo", "--once", timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    assert "demo complete: every command answered." in out
    for line in [
        "mumble           flake         load",
        "mattermost-lts   genuine       recipe",
        "uptime-kuma      intermittent",
        "discourse        genuine       timeout",
        "keycloak         genuine       harness",
    ]:
        assert line in out
    assert "redfix/testme: success" in out
    assert "not allowed to start runs" in out
    assert "is not a recipe name" in out


RULES = """
[[rule]]
id = "ci-marker-lost"
pattern = 'relation "ci_marker" does not exist'
where = "log"
cause = "recipe"
advice = "Fix the recipe's backup/restore hooks so the database is restored whole."

[[rule]]
id = "too-broad"
pattern = "abra app deploy"
where = "log"
cause = "harness"
advice = "Stabilise the harness."
"""


def test_signatures_check_counts_matches_and_flags_loose_rules(tmp_path: Path) -> None:
    from bot.sim.sweep import seed_sweep

    runs = tmp_path / "runs"
    ids = seed_sweep(runs, tmp_path / "scratch", {"mattermost-lts": "R", "custom-html": "G"})
    (runs / ids[0] / "output.log").write_text(
        'abra app deploy mm\npsycopg2.errors.UndefinedTable: relation "ci_marker" does not exist\n'
    )
    (runs / ids[1] / "output.log").write_text("abra app deploy ch\nall green\n")
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    r = cli("signatures", "check", str(rules), "--against", str(runs))
    assert r.returncode == 1, r.stdout + r.stderr
    lines = {line.split()[0]: line for line in r.stdout.splitlines() if line.strip()}
    assert "1/1" in lines["ci-marker-lost"]
    assert "0/1" in lines["ci-marker-lost"]
    assert "TOO LOOSE" in lines["too-broad"]
    assert "too-broad" in r.stderr


def test_bad_rules_are_reported_with_their_ids(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        RULES.replace('where = "log"\ncause = "harness"', 'where = "logs"\ncause = "harness"')
        + '\n[[rule]]\nid = "broken"\npattern = "(unclosed"\nwhere = "log"\ncause = "recipe"\n'
        'advice = "x"\n'
    )
    r = cli("signatures", "check", str(rules), "--against", str(tmp_path))
    assert r.returncode == 1
    assert "too-broad" in r.stderr
    assert "broken" in r.stderr
    assert "Traceback" not in r.stderr
    # check-config reports the same problems for the configured signatures file.
    key, kh = tmp_path / "id", tmp_path / "kh"
    key.write_text("x")
    kh.write_text("x")
    text = (ROOT / "config.example.toml").read_text()
    text = text.replace("/etc/redfix/id_ed25519", str(key)).replace(
        "/etc/redfix/known_hosts", str(kh)
    )
    text = text.replace('# signatures = "/etc/redfix/signatures.toml"', f'signatures = "{rules}"')
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    r = cli("check-config", str(cfg), env={"REDFIX_WEBHOOK_SECRET": "a-long-secret"})
    assert r.returncode == 1
    assert "classify.signatures" in r.stderr
    assert "broken" in r.stderr
    assert "too-broad" in r.stderr
