"""Config: every problem listed with its key path; env secrets win; the example documents all."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path

import asyncssh
import pytest

from bot.adapters.config import Config, ConfigError, load_config, parse_config
from bot.adapters.preflight import machine_problems
from tests.configs import machine_doc, minimal_doc

ROOT = Path(__file__).resolve().parents[1]


def test_minimal_config_has_sane_defaults(tmp_path: Path) -> None:
    cfg = parse_config(minimal_doc(tmp_path), env={})
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
    data = minimal_doc(tmp_path)
    cfg = parse_config(
        data,
        env={"REDFIX_WEBHOOK_SECRET": "from-the-env-123", "REDFIX_GITEA_TOKEN": "tok-from-env"},
    )
    assert cfg.gitea.webhook_secret.get_secret_value() == "from-the-env-123"
    assert cfg.gitea.token is not None
    assert cfg.gitea.token.get_secret_value() == "tok-from-env"
    assert "from-the-env-123" not in repr(cfg)  # secrets never print


def test_short_webhook_secret_refused(tmp_path: Path) -> None:
    data = minimal_doc(tmp_path, gitea={"webhook_secret": "x"})
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


# --- what the machine must offer the config (bot/preflight.py) --------------------------------


def test_a_duplicate_host_name_is_reported_beside_schema_errors(tmp_path: Path) -> None:
    data = minimal_doc(tmp_path)
    data["hosts"] = [data["hosts"][0], dict(data["hosts"][0])]
    data["server"] = {"listen": "nowhere"}
    with pytest.raises(ConfigError) as ei:
        parse_config(data, env={})
    assert ei.value.problems == [
        "server.listen: must be host:port, e.g. 127.0.0.1:8480",
        "hosts: host names must be unique: ci",
    ]
    del data["server"]  # alone, it is still refused
    with pytest.raises(ConfigError, match="hosts: host names must be unique: ci"):
        parse_config(data, env={})


def good_files(base: Path) -> tuple[Path, Path]:
    key = asyncssh.generate_private_key("ssh-ed25519")
    (base / "id").write_bytes(key.export_private_key())
    (base / "id").chmod(0o600)
    (base / "kh").write_text(f"127.0.0.1 {key.export_public_key().decode()}")
    return base / "id", base / "kh"


def test_machine_checks_pass_on_good_files(tmp_path: Path) -> None:
    key, kh = good_files(tmp_path)
    assert machine_problems(machine_doc(key, kh, tmp_path / "data")) == []


@pytest.mark.parametrize(
    ("make", "cause"),
    [
        (lambda p: None, "no such file: "),
        (lambda p: p.mkdir(), "is a directory, not a file: "),
        (
            lambda p: p.write_bytes(
                asyncssh.generate_private_key("ssh-ed25519").export_public_key()
            ),
            "is a public key; name the private key file (without .pub): ",
        ),
        (
            lambda p: p.write_bytes(
                asyncssh.generate_private_key("ssh-ed25519").export_private_key(passphrase="pw")
            ),
            "is encrypted with a passphrase; redfix needs a key it can load unattended: ",
        ),
        (lambda p: p.write_text("hello\n"), "not a private key asyncssh can load ("),
    ],
    ids=["missing", "directory", "public", "passphrase", "garbage"],
)
def test_each_way_a_client_key_can_be_wrong(
    tmp_path: Path, make: Callable[[Path], object], cause: str
) -> None:
    _, kh = good_files(tmp_path)
    key = tmp_path / "client-key"
    make(key)
    problems = machine_problems(machine_doc(key, kh, tmp_path / "data"))
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"hosts[0:ci].client_keys[0]: {cause}"), problems
    assert problems[0].endswith(str(key))


def test_a_key_under_a_file_cannot_be_reached_even_by_root(tmp_path: Path) -> None:
    _, kh = good_files(tmp_path)
    (tmp_path / "plain").write_text("")
    problems = machine_problems(machine_doc(tmp_path / "plain" / "id", kh, tmp_path / "data"))
    assert problems == [
        "hosts[0:ci].client_keys[0]: cannot be reached: a directory on its path is a file: "
        f"{tmp_path / 'plain' / 'id'}"
    ]


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        ("", "has no host keys, so every connection would be refused"),
        ("# only a comment\n", "has no host keys, so every connection would be refused"),
        ("127.0.0.1\n", "does not parse as a known_hosts file (Invalid known hosts entry"),
    ],
)
def test_known_hosts_that_would_refuse_every_host(tmp_path: Path, text: str, cause: str) -> None:
    key, kh = good_files(tmp_path)
    kh.write_text(text)
    problems = machine_problems(machine_doc(key, kh, tmp_path / "data"))
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"hosts[0:ci].known_hosts: {cause}")


def test_data_dir_that_is_a_file_or_under_one(tmp_path: Path) -> None:
    key, kh = good_files(tmp_path)
    (tmp_path / "f").write_text("")
    assert machine_problems(machine_doc(key, kh, tmp_path / "f")) == [
        f"server.data_dir: exists and is not a directory: {tmp_path / 'f'}"
    ]
    assert machine_problems(machine_doc(key, kh, tmp_path / "f" / "a" / "b")) == [
        f"server.data_dir: cannot be created: {tmp_path / 'f'} is a file, not a directory: "
        f"{tmp_path / 'f' / 'a' / 'b'}"
    ]


def as_user(uid: int, gid: int, fn: Callable[[], list[str]]) -> list[str]:
    """fn's answer computed in a child process that runs as uid/gid: really another user,
    so the kernel, not a stand-in, decides what it may read and write."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            out = json.dumps(fn()).encode()
            os.write(w, out)
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        raw = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    result: list[str] = json.loads(raw)
    return result


def test_files_the_bot_user_cannot_read_or_write(tmp_path: Path) -> None:
    """As another user for real: the tests run as root here, and root reads a mode-000 file
    and writes a read-only folder, so a root-only run of this check would prove nothing."""
    # A folder every user can enter (pytest's tmp_path is root-only), holding files only
    # root may use: a 0600 key, a 0755 data_dir's parent.
    base = Path(tempfile.mkdtemp(prefix="redfix-perm-"))
    owned = base / "owned"
    try:
        base.chmod(0o755)
        key, kh = good_files(base)
        kh.chmod(0o644)
        owned.mkdir(mode=0o755)
        doc = machine_doc(key, kh, owned / "data")
        if os.geteuid() == 0:
            user = pwd.getpwnam("nobody")
            who = f"nobody (uid {user.pw_uid})"
            # Positive control: root is refused nothing, so the problems below are the user's.
            assert machine_problems(doc) == []
            found = as_user(user.pw_uid, user.pw_gid, lambda: machine_problems(doc))
        else:  # an ordinary user runs the suite: take its own rights away
            key.chmod(0)
            owned.chmod(0o555)
            who = f"{pwd.getpwuid(os.geteuid()).pw_name} (uid {os.geteuid()})"
            found = machine_problems(doc)
        assert found == [
            f"hosts[0:ci].client_keys[0]: not readable by the user redfix runs as, {who}: {key}",
            f"server.data_dir: cannot be created: {owned} is not writable by the user redfix "
            f"runs as, {who}: {owned / 'data'}",
        ]
    finally:
        if owned.exists():
            owned.chmod(0o755)  # the non-root branch took its own write right away
        shutil.rmtree(base)


def test_a_listen_address_that_is_not_this_machines(tmp_path: Path) -> None:
    key, kh = good_files(tmp_path)
    doc = machine_doc(key, kh, tmp_path / "data")
    assert machine_problems(doc) == []  # positive control: its own free loopback port binds
    doc["server"]["listen"] = "192.0.2.1:8480"  # TEST-NET-1, no host's
    assert machine_problems(doc) == [
        "server.listen: 192.0.2.1:8480: 192.0.2.1 is not an address of this machine"
    ]


def test_sweep_section_defaults_and_each_mistake_with_its_key(tmp_path: Path) -> None:
    cfg = parse_config(minimal_doc(tmp_path), env={})
    assert (cfg.sweep.window, cfg.sweep.watch, cfg.sweep.settle_s) == ("36h", False, 900.0)
    assert (cfg.sweep.tracking_repo, cfg.sweep.ignore_runs, cfg.sweep.runs) == ("", "^rf-", None)
    good = minimal_doc(tmp_path) | {
        "sweep": {
            "watch": True,
            "tracking_repo": "coop-cloud/cc-ci",
            "window": "2d",
            "runs": "auto",
        }
    }
    cfg = parse_config(good, env={})
    assert (cfg.sweep.watch, cfg.sweep.tracking_repo, cfg.sweep.runs) == (
        True,
        "coop-cloud/cc-ci",
        "auto",
    )
    bad = minimal_doc(tmp_path) | {
        "sweep": {
            "watch": True,
            "window": "forever",
            "ignore_runs": "(unclosed",
            "settle_s": -1,
            "load": 99,
            "colour": "red",
        }
    }
    with pytest.raises(ConfigError) as ei:
        parse_config(bad, "t.toml", env={})
    text = "\n".join(ei.value.problems)
    for fragment in [
        "sweep.window: a duration such as 36h, 90m or 2d",
        "sweep.ignore_runs: not a regular expression",
        "sweep.settle_s:",
        "sweep.load:",
        "sweep.colour: unknown key",
    ]:
        assert fragment in text, text
    assert "Traceback" not in text
    # The watcher without a tracking repository is its own problem, said plainly.
    lone = minimal_doc(tmp_path) | {"sweep": {"watch": True}}
    with pytest.raises(ConfigError) as ei:
        parse_config(lone, "t.toml", env={})
    assert "watch = true needs tracking_repo (owner/name)" in "\n".join(ei.value.problems)
    slash = minimal_doc(tmp_path) | {"sweep": {"tracking_repo": "not a repo"}}
    with pytest.raises(ConfigError) as ei:
        parse_config(slash, "t.toml", env={})
    assert "sweep.tracking_repo: 'not a repo' is not a repository: owner/name" in "\n".join(
        ei.value.problems
    )
