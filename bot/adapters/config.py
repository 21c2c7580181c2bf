"""The bot's configuration: a TOML file validated by pydantic, secrets overridable from the env."""

from __future__ import annotations

import os
import re
import string
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.model import (
    MAX_LOAD,
    MAX_RUNS,
    MAX_WINDOW_S,
    MIN_RUNS,
    RECIPE_RE,
    ascii_int,
    format_duration,
    parse_duration,
)
from bot.model.errors import InputError
from bot.model.profile import EXIT_KINDS, PROFILES, EnvNames, ExitCode, HarnessProfile, Words

ENV_SECRETS: dict[str, tuple[str, str]] = {
    "REDFIX_GITEA_TOKEN": ("gitea", "token"),
    "REDFIX_WEBHOOK_SECRET": ("gitea", "webhook_secret"),
    "REDFIX_MATRIX_ACCESS_TOKEN": ("matrix", "access_token"),
    "REDFIX_MATRIX_PASSWORD": ("matrix", "password"),
}
# Sections that may be absent: their env secrets only fill a section the file has.
OPTIONAL_SECTIONS = frozenset({"matrix"})
_MATRIX_USER_RE = r"^@[^:\s]+:[^\s]+$"
_MATRIX_ROOM_RE = r"^[!#][^\s]+$"
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Variables the bot itself sets per run besides its profile's env names ([harness.env_names]);
# [harness.env] must not shadow any of them.
BASE_ENV = frozenset({"REF", "PR"})
# Short words for an exit code's meaning in [harness.exit_codes] ("2 = 'usage error'").
EXIT_ALIASES = {
    "usage error": ExitCode("incomplete", "usage error of the test runner"),
    "internal error": ExitCode("incomplete", "internal error of the test runner"),
}
# What an [harness] evidence command may name; values are shell-quoted when filled in.
EVIDENCE_PLACEHOLDERS = frozenset({"recipe", "run_id", "runs_dir", "run_dir"})
MATRIX_CREDENTIALS = (
    "set access_token or password (or env REDFIX_MATRIX_ACCESS_TOKEN / REDFIX_MATRIX_PASSWORD)"
)
_SECRET_KEY_RE = re.compile(r"(?i)(token|password|passwd|secret|api_?key|private)")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Section):
    listen: str = Field("127.0.0.1:8480", description="host:port the webhook server binds")
    public_url: str = Field("http://127.0.0.1:8480", description="base URL people reach the bot at")
    data_dir: Path = Field(Path("./redfix-data"), description="SQLite db and run logs")
    max_body_bytes: int = Field(1_048_576, ge=1024, le=64 * 1_048_576)
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        le=600,
        description="seconds a connection has to send a request's headers (also the idle limit)",
    )
    body_timeout_s: float = Field(
        20.0, gt=0, le=600, description="seconds a webhook request has to send its whole body"
    )
    log_level: str = "info"
    log_format: Literal["text", "json"] = "text"
    health_interval_s: float = Field(60.0, ge=0, le=3600)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        number = ascii_int(port, max_digits=5)  # "8⁴80" is a digit string to isdigit()
        if not sep or not host or number is None or not 0 < number < 65536:
            raise ValueError("must be host:port, e.g. 127.0.0.1:8480")
        return v

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^\s/]+", v):
            raise ValueError("must be an http(s) URL, e.g. https://redfix.example.org")
        return v.rstrip("/")

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        if v.lower() not in ("debug", "info", "warning", "error"):
            raise ValueError("must be one of debug, info, warning, error")
        return v.lower()

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class GiteaConfig(_Section):
    url: str = Field(description="Gitea base URL, e.g. https://git.example.org")
    token: SecretStr | None = Field(None, description="API token (or env REDFIX_GITEA_TOKEN)")
    webhook_secret: SecretStr = Field(description="webhook secret (or env REDFIX_WEBHOOK_SECRET)")
    bot_login: str = Field(description="the bot's own Gitea login; its comments are ignored")
    allowed_orgs: tuple[str, ...] = ()
    status_context: str = "redfix/testme"
    timeout_s: float = Field(10.0, gt=0, le=120)
    verify_on_push: bool = False
    fix_repeat: int = Field(3, ge=1, le=10)
    repos: tuple[
        Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.*?\[\]-]+$")], ...
    ] = ()
    poll_interval: float = Field(60.0, ge=0, le=86_400)
    recipes: dict[str, Annotated[str, Field(pattern=RECIPE_RE.pattern)]] = Field(
        default_factory=dict
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^\s/]+", v):
            raise ValueError("must be an http(s) URL, e.g. https://git.example.org")
        return v.rstrip("/")

    @field_validator("webhook_secret")
    @classmethod
    def _secret(cls, v: SecretStr) -> SecretStr:
        if len(v.get_secret_value()) < 8:
            raise ValueError("must be at least 8 characters; the bot never accepts unsigned hooks")
        return v

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v1"


class HostConfig(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    address: str
    port: int = Field(22, gt=0, lt=65536)
    username: str
    client_keys: tuple[Path, ...] = Field(min_length=1)
    known_hosts: Path
    capacity: int = Field(2, ge=1, le=64)
    connect_timeout_s: float = Field(15.0, gt=0, le=300)
    # This host keeps its runs elsewhere than [harness] runs_dir ("": the same place).
    runs_dir: str = Field("", pattern=r"^$|^/")


def _fields(record: Any) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


class EnvNamesConfig(_Section):
    """[harness.env_names]: the variables the bot sets per run ("" = not set)."""

    unit: str | None = None
    run_id: str | None = None
    runs_dir: str | None = None
    quick: str | None = None
    test: str | None = None
    test_format: str | None = None

    @field_validator("unit", "run_id", "runs_dir", "quick", "test")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v and not _ENV_NAME_RE.match(v):
            raise ValueError(f"{v!r} is not an environment variable name")
        return v

    @field_validator("test_format")
    @classmethod
    def _format(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            names = {f[1] for f in string.Formatter().parse(v) if f[1] is not None}
        except ValueError as e:
            raise ValueError(f"{v!r}: {e}") from None
        if names != {"test"}:
            raise ValueError(f"{v!r} must hold {{test}} and nothing else in braces")
        return v


class WordsConfig(_Section):
    """[harness.words]: what a verdict calls things."""

    unit: str | None = Field(None, min_length=1, max_length=40)
    harness: str | None = Field(None, min_length=1, max_length=60)
    unit_fix: str | None = Field(None, min_length=1, max_length=120)
    harness_fix: str | None = Field(None, min_length=1, max_length=120)
    evidence_title: str | None = Field(None, min_length=1, max_length=60)
    advice: Literal["cc-ci", "generic"] | None = None


def _exit_code(key: str, value: str) -> tuple[int, ExitCode]:
    code = ascii_int(key.removeprefix("-"), max_digits=3)
    if code is None or code > 255:
        raise ValueError(f"{key!r} is not an exit code (0 to 255)")
    alias = EXIT_ALIASES.get(value.strip().lower())
    if alias is not None:
        return code, alias
    kind, _, meaning = value.partition(":")
    kind = kind.strip()
    if kind not in EXIT_KINDS:
        raise ValueError(
            f"{key} = {value!r}: start with one of {', '.join(sorted(EXIT_KINDS))} (then "
            "': what it means'), or say 'usage error' / 'internal error'"
        )
    return code, ExitCode(kind, meaning.strip() or kind)


class HarnessConfig(_Section):
    # Which harness this is (docs/harness.md): cc-ci (results.json, cc-ci's variables and exit
    # codes) or junit (JUnit XML alone, pytest's exit codes, redfix's own variable names).
    profile: Literal["cc-ci", "junit"] = "cc-ci"
    workdir: str = "/srv/cc-ci"
    command: str = "cc-ci-run runner/run_recipe_ci.py"
    runs_dir: str = "/var/lib/cc-ci-runs"
    # Where redfix keeps each detached run's pid, exit code and output on the host
    # (default: {runs_dir}/.redfix).
    state_dir: str = ""
    results: str = "{runs_dir}/{run_id}/results.json"
    junit: str = "{runs_dir}/{run_id}"
    teardown: str = ""
    timeout_s: float = Field(4200.0, gt=0)
    kill_grace_s: float = Field(30.0, ge=0, le=600)
    busy_probe: str = ""
    busy_wait_s: float = Field(1800.0, ge=0)
    busy_poll_s: float = Field(15.0, gt=0, le=3600)
    evidence: tuple[str, ...] = ()
    evidence_max_bytes: int = Field(65_536, ge=1024, le=4 * 1_048_576)
    evidence_timeout_s: float = Field(60.0, gt=0, le=3600)
    test_paths: tuple[str, ...] = ("tests/**", "custom/**", "**/tests/**", "test_*.py")
    env: dict[str, str] = Field(default_factory=dict)
    # The top-level results.json field whose non-empty value marks a PR verification run
    # (never part of a sweep); "" = no run is one.
    verification_field: str = Field("pr", pattern=r"^$|^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    # Overrides of the profile (absent: the profile's own; docs/harness.md says each).
    exit_codes: dict[str, str] = Field(default_factory=dict)
    lifecycle_stages: tuple[str, ...] | None = None  # ["*"]: every stage not a test stage
    test_stages: tuple[str, ...] | None = None  # ["*"]: every stage outside the lifecycle
    machinery_stages: tuple[str, ...] | None = None
    stale_test_needs: tuple[str, ...] | None = None
    harness_paths: tuple[str, ...] | None = None
    harness_line: str | None = None
    deadline_line: str | None = None
    promotion_line: str | None = None
    env_names: EnvNamesConfig = EnvNamesConfig()
    words: WordsConfig = WordsConfig()

    @field_validator("exit_codes")
    @classmethod
    def _exits(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            _exit_code(key, value)
        return v

    @field_validator("harness_line", "deadline_line", "promotion_line")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"not a regular expression: {e}") from None
        return v

    @model_validator(mode="after")
    def _own_names(self) -> HarnessConfig:
        if self.lifecycle_stages == ("*",) and self.test_stages == ("*",):
            raise ValueError("lifecycle_stages and test_stages cannot both be every stage")
        reserved = sorted((BASE_ENV | self.harness_profile().env.names) & self.env.keys())
        if reserved:
            raise ValueError(
                f"[harness.env] sets {', '.join(reserved)}, which the bot sets per run"
            )
        return self

    def harness_profile(self) -> HarnessProfile:
        """The profile this section describes: its preset, with the keys given here."""
        base = PROFILES[self.profile]

        def stages(v: tuple[str, ...] | None, default: frozenset[str] | None) -> Any:
            if v is None:
                return default
            return None if v == ("*",) else frozenset(v)

        env_given = {k: v for k, v in self.env_names.model_dump().items() if v is not None}
        words_given = {k: v for k, v in self.words.model_dump().items() if v is not None}
        exits = dict(base.exit_codes) | dict(_exit_code(k, v) for k, v in self.exit_codes.items())
        lines = {
            k: v
            for k, v in (
                ("harness_line", self.harness_line),
                ("deadline_line", self.deadline_line),
                ("promotion_line", self.promotion_line),
            )
            if v is not None
        }
        return HarnessProfile(
            name=base.name,
            results=base.results,
            env=EnvNames(**(_fields(base.env) | env_given)),
            exit_codes=exits,
            lifecycle_stages=stages(self.lifecycle_stages, base.lifecycle_stages),
            test_stages=stages(self.test_stages, base.test_stages),
            machinery_stages=frozenset(self.machinery_stages or base.machinery_stages),
            stale_test_needs=(
                frozenset(self.stale_test_needs)
                if self.stale_test_needs is not None
                else base.stale_test_needs
            ),
            harness_paths=self.harness_paths
            if self.harness_paths is not None
            else base.harness_paths,
            test_paths=base.test_paths,
            harness_line=lines.get("harness_line", base.harness_line),
            deadline_line=lines.get("deadline_line", base.deadline_line),
            promotion_line=lines.get("promotion_line", base.promotion_line),
            words=Words(**(_fields(base.words) | words_given)),
        )

    @field_validator("results", "junit")
    @classmethod
    def _template(cls, v: str) -> str:
        try:
            v.format(runs_dir="x", run_id="y")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"only {{runs_dir}} and {{run_id}} may be used ({e})") from None
        return v

    @field_validator("evidence")
    @classmethod
    def _evidence(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for i, cmd in enumerate(v):
            try:
                names = {f[1] for f in string.Formatter().parse(cmd) if f[1] is not None}
            except ValueError as e:
                raise ValueError(f"[{i}] {cmd!r}: {e}") from None
            unknown = sorted(names - EVIDENCE_PLACEHOLDERS)
            if unknown:
                raise ValueError(
                    f"[{i}] {cmd!r}: unknown placeholder(s) {', '.join(unknown)}; "
                    f"known: {', '.join(sorted(EVIDENCE_PLACEHOLDERS))}"
                )
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [k for k in v if not _ENV_NAME_RE.match(k)]
        if bad:
            raise ValueError(f"not valid environment variable names: {', '.join(sorted(bad))}")
        return v

    @property
    def state_root(self) -> str:
        return self.state_dir.rstrip("/") or f"{self.runs_dir.rstrip('/')}/.redfix"

    def results_path(self, run_id: str) -> str:
        return self.results.format(runs_dir=self.runs_dir.rstrip("/"), run_id=run_id)

    def junit_dir(self, run_id: str) -> str:
        return self.junit.format(runs_dir=self.runs_dir.rstrip("/"), run_id=run_id)


class IsolationConfig(_Section):
    runs: Annotated[int, Field(ge=MIN_RUNS, le=MAX_RUNS)] = 3
    max_runs: Annotated[int, Field(ge=MIN_RUNS, le=MAX_RUNS)] = 10
    load: Annotated[int, Field(ge=0, le=MAX_LOAD)] = 0
    load_recipes: tuple[Annotated[str, Field(pattern=RECIPE_RE.pattern)], ...] = ()
    load_rounds: int = Field(1, ge=1, le=10)
    reference_scan_limit: int = Field(200, ge=1, le=10_000)


class SweepConfig(_Section):
    """`!redfix sweep` and the watcher (README, "Sweeps")."""

    window: str = "36h"
    watch: bool = False
    settle_s: float = Field(900.0, ge=0, le=86_400)
    poll_s: float = Field(60.0, gt=0, le=3600)
    tracking_repo: str = ""
    runs: Annotated[int, Field(ge=MIN_RUNS, le=MAX_RUNS)] | Literal["auto"] | None = None
    load: int = Field(0, ge=0, le=MAX_LOAD)
    scan_limit: int = Field(500, ge=1, le=10_000)
    ignore_runs: str = "^rf-"

    @field_validator("tracking_repo")
    @classmethod
    def _repo(cls, v: str) -> str:
        if v and not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", v):
            raise ValueError(f"{v!r} is not a repository: owner/name, e.g. coop-cloud/cc-ci")
        return v

    @field_validator("window")
    @classmethod
    def _window(cls, v: str) -> str:
        seconds = parse_duration(v)
        if seconds is None or not 0 < seconds <= MAX_WINDOW_S:
            raise ValueError(
                f"a duration such as 36h, 90m or 2d (at most {format_duration(MAX_WINDOW_S)})"
            )
        return v

    @field_validator("ignore_runs")
    @classmethod
    def _ignore(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"not a regular expression: {e}") from None
        return v

    @model_validator(mode="after")
    def _tracking(self) -> SweepConfig:
        if self.watch and not self.tracking_repo:
            raise ValueError(
                "watch = true needs tracking_repo (owner/name): the watcher opens each "
                "sweep's tracking issue there"
            )
        return self

    @property
    def window_s(self) -> float:
        seconds = parse_duration(self.window)
        assert seconds is not None  # validated
        return seconds


class SchedulerConfig(_Section):
    max_concurrent: int = Field(0, ge=0, le=1000)


class ClassifyConfig(_Section):
    signatures: Path | None = None
    default_signatures: bool = True


class MatrixConfig(_Section):
    """Optional: without a [matrix] section the bot runs on Gitea alone."""

    homeserver: str = Field(description="homeserver base URL, e.g. https://matrix.example.org")
    user_id: str = Field(pattern=_MATRIX_USER_RE, description="the bot's user id")
    access_token: SecretStr | None = None
    password: SecretStr | None = None
    device_id: str = ""
    rooms: tuple[Annotated[str, Field(pattern=_MATRIX_ROOM_RE)], ...] = ()
    allowed_users: tuple[Annotated[str, Field(pattern=_MATRIX_USER_RE)], ...] = ()
    min_power_level: int | None = Field(None, ge=0, le=1000)
    notify_room: Annotated[str, Field(pattern=r"^$|" + _MATRIX_ROOM_RE)] = ""
    timeout_s: float = Field(30.0, gt=0, le=300)
    # Commands that act on a Gitea PR (`!testme owner/repo#N`, `link`, `cancel`): a mapped
    # sender's Gitea login must pass the Gitea rule there; an unmapped one is trusted on the
    # room's word, but only for repositories matching `target_repos` (default: [gitea] repos).
    gitea_logins: dict[
        Annotated[str, Field(pattern=_MATRIX_USER_RE)],
        Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,40}$")],
    ] = Field(default_factory=dict)
    target_repos: tuple[
        Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.*?\[\]-]+$")], ...
    ] = ()

    @field_validator("homeserver")
    @classmethod
    def _homeserver(cls, v: str) -> str:
        if not re.match(r"^https?://[^\s/]+", v):
            raise ValueError("must be an http(s) URL, e.g. https://matrix.example.org")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _credentials(self) -> MatrixConfig:
        if self.access_token is None and self.password is None:
            raise ValueError(MATRIX_CREDENTIALS)
        return self


class Config(_Section):
    server: ServerConfig = Field(default_factory=lambda: ServerConfig())
    gitea: GiteaConfig
    hosts: tuple[HostConfig, ...] = Field(min_length=1)
    harness: HarnessConfig = Field(default_factory=lambda: HarnessConfig())
    isolation: IsolationConfig = Field(default_factory=lambda: IsolationConfig())
    classify: ClassifyConfig = Field(default_factory=lambda: ClassifyConfig())
    scheduler: SchedulerConfig = Field(default_factory=lambda: SchedulerConfig())
    sweep: SweepConfig = Field(default_factory=lambda: SweepConfig())
    matrix: MatrixConfig | None = None

    def harness_for(self, host: str) -> HarnessConfig:
        """The harness as `host` runs it: its own runs_dir, if it has one."""
        h = next((h for h in self.hosts if h.name == host), None)
        if h is None or not h.runs_dir:
            return self.harness
        return self.harness.model_copy(update={"runs_dir": h.runs_dir})

    def secrets(self) -> list[str]:
        """Every configured secret value, for redaction of anything posted or logged."""
        out = [self.gitea.webhook_secret.get_secret_value()]
        if self.gitea.token is not None:
            out.append(self.gitea.token.get_secret_value())
        # The harness may print its own environment; secret-looking values must not travel.
        out += [v for k, v in self.harness.env.items() if _SECRET_KEY_RE.search(k)]
        if self.matrix is not None:
            out += [
                s.get_secret_value()
                for s in (self.matrix.access_token, self.matrix.password)
                if s is not None
            ]
        return [s for s in out if s]


class ConfigError(InputError):
    """A config that cannot be used; `problems` lists every one, each with its key path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


def key_path(loc: tuple[int | str, ...], data: Mapping[str, Any]) -> str:
    """`hosts[0:ci].client_keys[1]` for ("hosts", 0, "client_keys", 1): list items carry the
    `name` of their table when it has one, so a message says which host it is about."""
    parts: list[str] = []
    node: Any = data
    for item in loc:
        if isinstance(item, int):
            entry = node[item] if isinstance(node, list | tuple) else None
            name = entry.get("name") if isinstance(entry, dict) else None
            label = f"[{item}]" if not isinstance(name, str) else f"[{item}:{name}]"
            parts[-1:] = [(parts[-1] if parts else "") + label]
        else:
            parts.append(item)
        try:
            node = node[item]
        except (KeyError, IndexError, TypeError):
            node = None
    return ".".join(parts) or "(top level)"


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> None:
    for var, (section, key) in ENV_SECRETS.items():
        value = env.get(var)
        if value and (section in data or section not in OPTIONAL_SECTIONS):
            sect = data.setdefault(section, {})
            if isinstance(sect, dict):
                sect[key] = value


def parse_config(
    data: dict[str, Any], source: str = "<config>", env: Mapping[str, str] | None = None
) -> Config:
    """Validate a decoded TOML document; raise ConfigError listing every problem."""
    _apply_env(data, os.environ if env is None else env)
    # Checks across fields run on the raw document too: pydantic skips a model's own
    # validators once any field failed, and then one typo would hide a duplicate host name.
    cross = cross_field_problems(data)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        problems = _schema_problems(e, data)
        raise ConfigError(source, problems + [p for p in cross if p not in problems]) from None
    if cross:
        raise ConfigError(source, cross)
    return cfg


def _schema_problems(e: ValidationError, data: Mapping[str, Any]) -> list[str]:
    problems = []
    errors = e.errors()
    for err in errors:
        loc = tuple(err["loc"])
        # pydantic also calls a list "too short" when only its items were invalid: noise.
        if err["type"] == "too_short" and any(
            len(o["loc"]) > len(loc) and tuple(o["loc"][: len(loc)]) == loc for o in errors
        ):
            continue
        path = key_path(loc, data)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "missing"
            env_var = next(
                (v for v, (s, k) in ENV_SECRETS.items() if (s, k) == tuple(err["loc"][:2])),
                None,
            )
            if env_var:
                msg += f" (set it in the file or in the environment as {env_var})"
        elif err["type"] == "too_short":
            n = (err.get("ctx") or {}).get("min_length", 1)
            msg = f"needs at least {n} item{'s' if n != 1 else ''}"
        elif err["type"] == "extra_forbidden":
            msg = "unknown key (typo?)"
        problems.append(f"{path}: {msg}")
    return problems


def cross_field_problems(data: Mapping[str, Any]) -> list[str]:
    """Rules that tie several keys together, read from the raw document (wrong types are the
    schema's to report, so they are skipped here)."""
    problems = []
    hosts = data.get("hosts")
    if isinstance(hosts, list):
        names = [h.get("name") for h in hosts if isinstance(h, dict)]
        dupes = sorted({n for n in names if isinstance(n, str) and names.count(n) > 1})
        if dupes:
            problems.append(f"hosts: host names must be unique: {', '.join(dupes)}")
    matrix = data.get("matrix")
    if isinstance(matrix, dict) and not matrix.get("access_token") and not matrix.get("password"):
        problems.append(f"matrix: {MATRIX_CREDENTIALS}")
    return problems


def read_document(path: Path | str) -> dict[str, Any]:
    """The decoded TOML of a config file, not yet validated; ConfigError if it cannot be read."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(str(p), [f"cannot read: {e.strerror or e}"]) from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(str(p), [f"not UTF-8 text: {e}"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(p), [f"TOML syntax: {e}"]) from None


def load_config(path: Path | str, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a TOML config file (schema only; preflight checks the machine)."""
    return parse_config(read_document(path), str(path), env)
