"""The command line: check-config explains, --version answers, the demo runs the whole loop."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import asyncssh
import pytest

from bot import __version__
from tests.sshd import free_port

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


def write_key(path: Path) -> Path:
    path.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
    path.chmod(0o600)
    return path


def write_known_hosts(path: Path) -> Path:
    pub = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    path.write_text(f"[127.0.0.1]:2222 {pub}")
    return path


def good_config(tmp_path: Path, replace: dict[str, str] | None = None) -> Path:
    """The example config with a real key, a known_hosts, a data_dir and a free port here;
    `replace` maps more of the example's text to what replaces it."""
    key = write_key(tmp_path / "id")
    kh = write_known_hosts(tmp_path / "known_hosts")
    text = (ROOT / "config.example.toml").read_text()
    text = text.replace("/etc/redfix/id_ed25519", str(key)).replace(
        "/etc/redfix/known_hosts", str(kh)
    )
    text = text.replace('data_dir = "/var/lib/redfix"', f'data_dir = "{tmp_path / "data"}"')
    text = text.replace('listen = "127.0.0.1:8480"', f'listen = "127.0.0.1:{free_port()}"')
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    return cfg


def problem_lines(stderr: str) -> list[str]:
    return [line.removeprefix("  - ") for line in stderr.splitlines() if line.startswith("  - ")]


def test_check_config_accepts_a_good_config(tmp_path: Path) -> None:
    r = cli(
        "check-config", str(good_config(tmp_path)), env={"REDFIX_WEBHOOK_SECRET": "a-long-secret"}
    )
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout
    assert "a-long-secret" not in r.stdout


# Five independent problems, one of each kind: the schema (an unknown key in [server]),
# a client key that is no key, a known_hosts that does not parse, a data_dir that cannot
# be created (its parent is a file: true for root too), and a broken signature rule.
FIVE = {
    "server.bogus": "unknown key (typo?)",
    "hosts[0:cc-ci].client_keys[0]": "not a private key asyncssh can load",
    "hosts[0:cc-ci].known_hosts": "does not parse as a known_hosts file",
    "server.data_dir": "cannot be created:",
    "classify.signatures": "pattern",
}


def five_problem_config(tmp_path: Path) -> Path:
    cfg = good_config(tmp_path)
    (tmp_path / "id").write_text("this is not a key\n")
    (tmp_path / "known_hosts").write_text("@revoked-typo 127.0.0.1 ssh-ed25519 AAAA\n")
    (tmp_path / "a-file").write_text("")
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nid = "broken"\npattern = "(unclosed"\nwhere = "log"\ncause = "recipe"\n'
        'advice = "x"\n'
    )
    text = cfg.read_text()
    text = text.replace(
        f'data_dir = "{tmp_path / "data"}"', f'data_dir = "{tmp_path}/a-file/data"\nbogus = 1'
    )
    text = text.replace('# signatures = "/etc/redfix/signatures.toml"', f'signatures = "{rules}"')
    cfg.write_text(text)
    return cfg


def test_check_config_and_serve_list_five_independent_problems_at_once(tmp_path: Path) -> None:
    cfg = five_problem_config(tmp_path)
    env = {"REDFIX_WEBHOOK_SECRET": "a-long-secret"}
    check = cli("check-config", str(cfg), env=env)
    assert check.returncode == 1
    assert "Traceback" not in check.stderr
    found = problem_lines(check.stderr)
    for key, cause in FIVE.items():
        assert [p for p in found if p.startswith(f"{key}: ") and cause in p], (key, found)
    assert len(found) == 5, found
    assert f"{cfg}: 5 problems:" in check.stderr
    # serve refuses before it binds or creates anything, with the very same lines.
    serve = cli("serve", "--config", str(cfg), env=env)
    assert serve.returncode == 2
    assert "Traceback" not in serve.stderr
    assert problem_lines(serve.stderr) == found
    assert "cannot serve on" not in serve.stderr


def test_check_config_names_a_listen_address_in_use(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cfg = good_config(tmp_path)
        text = cfg.read_text()
        cfg.write_text(re.sub(r'listen = "127.0.0.1:\d+"', f'listen = "127.0.0.1:{port}"', text))
        r = cli("check-config", str(cfg), env={"REDFIX_WEBHOOK_SECRET": "a-long-secret"})
    assert r.returncode == 1
    assert problem_lines(r.stderr) == [
        f"server.listen: 127.0.0.1:{port}: address already in use: another process listens "
        f"on 127.0.0.1 port {port}"
    ]


def test_serve_blames_the_data_dir_not_the_listen_address(tmp_path: Path) -> None:
    # The data_dir exists but is a file: before, serve said "cannot serve on <listen>: ...".
    cfg = good_config(tmp_path)
    (tmp_path / "data").write_text("")
    r = cli("serve", "--config", str(cfg), env={"REDFIX_WEBHOOK_SECRET": "a-long-secret"})
    assert r.returncode == 2
    assert problem_lines(r.stderr) == [
        f"server.data_dir: exists and is not a directory: {tmp_path / 'data'}"
    ]
    assert "cannot serve on" not in r.stderr


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
    cfg = good_config(
        tmp_path, {'# signatures = "/etc/redfix/signatures.toml"': f'signatures = "{rules}"'}
    )
    r = cli("check-config", str(cfg), env={"REDFIX_WEBHOOK_SECRET": "a-long-secret"})
    assert r.returncode == 1
    assert "classify.signatures" in r.stderr
    assert "broken" in r.stderr
    assert "too-broad" in r.stderr


def test_report_sweep_prints_the_status_file_its_json_and_its_page(tmp_path: Path) -> None:
    import asyncio
    import json

    from bot.adapters.store import Store
    from bot.core.sweepboard import sweep_view
    from bot.model.records import SweepSeen, TriageFailure
    from bot.render.sweep import render_status_file

    cfg = good_config(tmp_path)
    PUBLIC = "https://redfix.example.org"
    assert f'public_url = "{PUBLIC}"' in cfg.read_text()
    env = {"REDFIX_WEBHOOK_SECRET": "a-long-secret"}
    (tmp_path / "data").mkdir()
    db = tmp_path / "data" / "redfix.sqlite3"
    r = cli("report", "--config", str(cfg), "--sweep", "latest", env=env)
    assert r.returncode == 1
    assert "no store at" in r.stderr

    async def seed() -> str:
        store = await Store.open(db)
        seen = [
            SweepSeen("mumble", "sweep-01-mumble", "cc-ci", 1_781_654_400.0, True),
            SweepSeen("custom-html", "sweep-02-custom-html", "cc-ci", 1_781_654_460.0, False),
        ]
        failure = TriageFailure("sweep-01-mumble", ("custom",), ("t.py::t",), ("1 != 2",), "cc-ci")
        sweep_id, _ = await store.add_sweep(
            "scan:abc", "command", "a/b", 4, 1, "alice", (1_781_600_000.0, 1_781_654_500.0),
            seen, [], (3, False, 0), [("mumble", failure)],
        )  # fmt: skip
        (row,) = await store.sweep_triages(sweep_id)
        await store.update_triage(row.id, verdict={"outcome": "flake", "cause": "load"})
        sweep = await store.sweep(sweep_id)
        assert sweep is not None
        view = await sweep_view(
            store, sweep, gitea_url="https://git.example.org", public_url=PUBLIC
        )
        await store.close()
        return render_status_file(view)

    expected = asyncio.run(seed())
    md = cli("report", "--config", str(cfg), "--sweep", "latest", env=env)
    assert md.returncode == 0, md.stderr
    by_number = cli("report", "--config", str(cfg), "--sweep", "sweep-1", env=env)
    assert by_number.stdout == md.stdout  # `sweep-1` and `1` and `latest` are the same one
    assert md.stdout.startswith("# Sweep 1 — 2026-06-17\n")
    assert "| `mumble` | flake / load |" in md.stdout
    assert "custom-html" not in md.stdout.split("## Results")[1].split("## Milestones")[0]
    assert md.stdout == expected + "\n"  # the same records, the same bytes as the bot's
    doc = json.loads(cli("report", "--config", str(cfg), "--sweep", "1", "--format", "json",
                         env=env).stdout)  # fmt: skip
    assert (doc["id"], doc["failures"], doc["isolated"]) == (1, 1, 1)
    assert doc["rows"][0]["state"] == "flake / load"
    page = cli("report", "--config", str(cfg), "--sweep", "1", "--format", "html", env=env)
    assert page.stdout.startswith("<!doctype html>")
    assert "<td><code>mumble</code></td>" in page.stdout
    for missing in ("2", "sweep-x", "latest-but-one"):
        r = cli("report", "--config", str(cfg), "--sweep", missing, env=env)
        assert r.returncode == 1
        assert f"no sweep {missing}" in r.stderr
        assert "Traceback" not in r.stderr
