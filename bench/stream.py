"""Benchmark 3, log streaming: a big harness output through SshRunner from a real sshd vs ssh."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import shlex
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from bench.common import Report, Settings, Target, fmt, reset_peak_rss, status_kib
from bot.adapters.config import HarnessConfig
from bot.adapters.ssh.commands import READ_CHUNK
from bot.adapters.ssh.connection import CIPHERS
from bot.adapters.ssh.runner import SshRunner
from bot.model import RunSpec
from tests.sshd import SSHD, Sshd

MB = 1_000_000
GIB = 1 << 30
BENCH_USER = "redfix-bench"
LINE = b"x" * 199 + b"\n"  # 200-byte lines, as `fold -w 200` makes them
SAMPLE_S = 0.01


@dataclass(frozen=True)
class Sizes:
    size: int
    rounds: int


FULL = Sizes(size=GIB, rounds=2)
QUICK = Sizes(size=20 * MB, rounds=1)


@contextlib.contextmanager
def login_user() -> Iterator[str]:
    """The user the bench logs in as. As root it is a dedicated user with /bin/sh (dash reads
    no rc file), removed afterwards if we made it: root's ~/.bashrc here runs `pyenv init` for
    every SSH command, which would be timed too."""
    if os.geteuid() != 0:
        yield pwd.getpwuid(os.geteuid()).pw_name
        return
    try:
        pwd.getpwnam(BENCH_USER)
        created = False
    except KeyError:
        # Home "/": sshd changes into it, and a missing home would print a warning into the log.
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                "/",
                "--shell",
                "/bin/sh",
                BENCH_USER,
            ],
            check=True,
        )
        created = True
    try:
        yield BENCH_USER
    finally:
        if created:
            subprocess.run(["userdel", BENCH_USER], check=False)


@contextlib.contextmanager
def private_sshd(base: Path, user: str) -> Iterator[Sshd]:
    """tests/sshd.py's Sshd, logging in `user`; everything it reads is world-readable because
    sshd reads authorized_keys, and the login reads the data, as that user."""
    dirs = {name: base / name for name in ("sshd", "work", "runs")}
    for d in (base, *dirs.values()):
        d.mkdir(exist_ok=True)
        d.chmod(0o755)
    dirs["runs"].chmod(0o1777)  # the login keeps each run's state (pid, output) under it
    server = Sshd(base=dirs["sshd"], workdir=dirs["work"], runs_dir=dirs["runs"])
    server.username = user
    public = Path(f"{server.client_key}.pub").read_text()
    (dirs["sshd"] / f"authorized_keys.{user}").write_text(public)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def write_data(path: Path, size: int) -> None:
    """`size` bytes of 200-byte lines, written once and read from the page cache afterwards."""
    block = LINE * (4 * 1024 * 1024 // len(LINE))
    with path.open("wb") as f:
        left = size
        while left > 0:
            piece = block[:left]
            f.write(piece)
            left -= len(piece)
    path.chmod(0o644)


def ssh_argv(sshd: Sshd, command: str, *options: str) -> list[str]:
    """OpenSSH's client with the same key and known_hosts, no user config, host key checked."""
    return [
        "ssh",
        *options,
        "-F", "/dev/null",
        "-i", str(sshd.client_key),
        "-o", "IdentitiesOnly=yes",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={sshd.known_hosts}",
        "-p", str(sshd.port),
        f"{sshd.username}@{sshd.host}",
        command,
    ]  # fmt: skip


async def openssh_pass(sshd: Sshd, data: Path) -> float:
    """Seconds for `ssh host cat FILE > /dev/null`."""
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *ssh_argv(sshd, f"cat {shlex.quote(str(data))}"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, err = await proc.communicate()
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"ssh exited {proc.returncode}: {err.decode(errors='replace')}")
    return elapsed


class RssSampler:
    """Peak resident memory of this process while a block runs, sampled on a thread (the event
    loop is the thing being measured, so it cannot be trusted to sample itself) and read from
    VmHWM after a reset."""

    def __init__(self) -> None:
        self.before_kib = 0
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.peak_kib = max(self.peak_kib, status_kib("VmRSS"))

    def __enter__(self) -> RssSampler:
        reset_peak_rss()
        self.before_kib = self.peak_kib = status_kib("VmRSS")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kib = max(self.peak_kib, status_kib("VmHWM"))

    @property
    def growth_mb(self) -> float:
        return (self.peak_kib - self.before_kib) * 1024 / MB


async def runner_pass(sshd: Sshd, data: Path, logs: Path, n: int) -> tuple[float, int, float]:
    """Seconds for one SshRunner run of `cat FILE`, bytes it logged, and peak RSS growth (MB)."""
    harness = HarnessConfig(
        workdir=str(sshd.workdir),
        command=f"cat {shlex.quote(str(data))}",
        runs_dir=str(sshd.runs_dir),
        timeout_s=3600,
        kill_grace_s=2,
    )
    runner = SshRunner(sshd.host_config(), harness, logs)
    spec = RunSpec(run_id=f"bench-stream-{n}", recipe="bench")
    try:
        with RssSampler() as rss:
            t0 = time.perf_counter()
            result = await runner.run(spec)
            elapsed = time.perf_counter() - t0
    finally:
        await runner.close()
    log = runner.log_file(spec.run_id)
    logged = log.stat().st_size
    log.unlink()  # a 1 GiB log per round is enough to keep around at once
    if result.exit_code != 0:
        raise RuntimeError(f"the streamed run exited {result.exit_code}: {result.problem}")
    return elapsed, logged, rss.growth_mb


@contextlib.asynccontextmanager
async def _connect(sshd: Sshd) -> AsyncIterator[asyncssh.SSHClientConnection]:
    """An asyncssh connection made the way SshRunner makes it (no user config, key checked,
    the runner's cipher preference)."""
    async with asyncssh.connect(
        sshd.host,
        port=sshd.port,
        username=sshd.username,
        client_keys=[str(sshd.client_key)],
        known_hosts=str(sshd.known_hosts),
        config=None,
        agent_path=None,
        encryption_algs=list(CIPHERS),
    ) as conn:
        yield conn


async def asyncssh_pass(sshd: Sshd, data: Path) -> float:
    """Seconds for asyncssh alone to read `cat FILE` and drop it: the SSH library's ceiling
    in this process, without anything the runner does with the bytes."""
    t0 = time.perf_counter()
    async with _connect(sshd) as conn:
        proc = await conn.create_process(f"cat {shlex.quote(str(data))}", encoding=None)
        while await proc.stdout.read(READ_CHUNK):
            pass
        await proc.wait_closed()
    return time.perf_counter() - t0


async def ciphers(sshd: Sshd) -> tuple[str, str]:
    """The cipher each client negotiates with this sshd: asyncssh's, then OpenSSH's."""
    async with _connect(sshd) as conn:
        ours = str(conn.get_extra_info("recv_cipher"))
    proc = await asyncio.create_subprocess_exec(
        *ssh_argv(sshd, "true", "-v"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, err = await proc.communicate()
    m = re.search(r"kex: server->client cipher: (\S+)", err.decode(errors="replace"))
    return ours, m[1] if m else "unknown"


async def measure(settings: Settings, sshd: Sshd, shared: Path, report: Report) -> None:
    """Stream from `sshd`; `shared` is a directory its login user can read."""
    sizes = QUICK if settings.quick else FULL
    data = shared / "harness-output.txt"
    write_data(data, sizes.size)
    logs = settings.tmp / "logs"
    await openssh_pass(sshd, data)  # warm: page cache, sshd's first login
    theirs, ours, library, growth, logged = [], [], [], [], []
    for n in range(sizes.rounds):
        # Alternating rounds share out whatever else this machine is doing.
        theirs.append(await openssh_pass(sshd, data))
        elapsed, size, rss = await runner_pass(sshd, data, logs, n)
        ours.append(elapsed)
        growth.append(rss)
        logged.append(size)
        library.append(await asyncssh_pass(sshd, data))
    cipher_ours, cipher_theirs = await ciphers(sshd)
    mb = sizes.size / MB
    rate, base, lib = mb / min(ours), mb / min(theirs), mb / min(library)
    if settings.quick:
        report.notes.append("quick: at this size connecting and logging in dominate the times")
    report.lines += [
        f"{fmt(mb)} MB of 200-byte lines (`cat` of a generated file) from a private OpenSSH "
        f"sshd on loopback, logging in as {sshd.username}",
        f"SshRunner.run: {fmt(rate)} MB/s (best of {len(ours)}: "
        f"{', '.join(f'{t:.2f}' for t in ours)} s), written to the run log as it streams",
        f"baseline, `ssh ... cat FILE > /dev/null`: {fmt(base)} MB/s (best of {len(theirs)}: "
        f"{', '.join(f'{t:.2f}' for t in theirs)} s)",
        f"ratio: {rate / base:.2f}× OpenSSH; ciphers: asyncssh {cipher_ours}, "
        f"OpenSSH {cipher_theirs}",
        f"diagnostic: asyncssh alone, reading and dropping the same stream in this process: "
        f"{fmt(lib)} MB/s ({lib / base:.2f}× OpenSSH; best of {len(library)})",
        f"bot process peak RSS growth while streaming: {fmt(max(growth))} MB "
        f"(per round: {', '.join(fmt(g) for g in growth)})",
    ]
    report.figures |= {
        "runner_mb_s": rate,
        "openssh_mb_s": base,
        "ratio": rate / base,
        "asyncssh_mb_s": lib,
        # Floored at a kilobyte: a process that did not grow still gives a number to print.
        "rss_growth_mb": max(max(growth), 0.001),
    }
    report.targets += [
        Target("throughput vs OpenSSH", rate / base, 0.7, "×", True),
        Target("peak RSS growth", max(growth), 50, " MB", False),
    ]
    # The runner ends an unterminated last line with a newline of its own.
    expected = sizes.size + (1 if sizes.size % len(LINE) else 0)
    report.checks["every byte reached the run log"] = all(s == expected for s in logged)


async def run(settings: Settings, sshd: Sshd | None = None) -> Report:
    """With `sshd` (the tests' fixture), stream from it; else start a private one."""
    report = Report("stream", "harness output → SshRunner → run log, from a real sshd")
    if sshd is not None:
        await measure(settings, sshd, settings.tmp, report)
        if sshd.username == "root":
            report.notes.append("logged in as root: ~/.bashrc runs for each SSH command")
        return report
    if not SSHD.exists():
        raise RuntimeError(f"{SSHD} not found: apt-get install -y openssh-server")
    # A directory of its own under /tmp: the bench's scratch dir is private (0700), and the
    # login user must reach its keys and the data.
    with (
        tempfile.TemporaryDirectory(prefix="redfix-bench-ssh-") as shared,
        login_user() as user,
        private_sshd(Path(shared), user) as server,
    ):
        await measure(settings, server, Path(shared), report)
    return report
