"""scripts/lib/venv.sh, the set-up scripts/test and scripts/demo share: the project venv is made
once and reused, a broken one is made again, a missing venv module is installed with apt (root)
or named (anyone else). Stub interpreters and tools stand in for Python, pip, id and apt-get,
each logging what it was asked, so the real logic runs in a second and nothing is installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "scripts" / "lib" / "venv.sh"

# A stand-in for `python3`: `-c` snippets succeed (it is a Python >= 3.11) except the one that
# imports ensurepip, which succeeds only once "python3-venv is installed" (a flag file);
# `-m venv DIR` makes DIR/bin/python, a stand-in for the venv's interpreter that logs pip calls
# (and hands the snippet reading pyproject.toml to a real Python).
STUB_PYTHON = r"""#!/bin/bash
state=$STUB_STATE
if [ "$1" = -c ]; then
    case "$2" in *ensurepip*) [ -e "$state/venv-module" ] || exit 1 ;; esac
    exit 0
fi
if [ "$1" = -m ] && [ "$2" = venv ]; then
    [ -e "$state/venv-module" ] || { echo "ensurepip is not available" >&2; exit 1; }
    echo "venv $3" >>"$state/log"
    mkdir -p "$3/bin"
    cat >"$3/bin/python" <<PY
#!/bin/bash
case "\$2" in *tomllib*) exec $REAL_PYTHON "\$@" ;; esac
[ "\$1" = -c ] && exit 0
echo "pip \${*:3}" >>"\$STUB_STATE/log"
PY
    chmod +x "$3/bin/python"
    exit 0
fi
echo "unexpected python3 $*" >&2
exit 99
"""
PYPROJECT = "[project]\nname = 'x'\ndependencies = ['a>=1']\n\n[tool.ruff]\nline-length = 100\n"
STUB_ID = '#!/bin/bash\n[ "$1" = -u ] && echo "$STUB_UID"\n'
STUB_APT = r"""#!/bin/bash
echo "apt-get $*" >>"$STUB_STATE/log"
[ "$1" = install ] && case " $* " in *" python3-venv "*) touch "$STUB_STATE/venv-module" ;; esac
exit 0
"""


@dataclass
class Sandbox:
    project: Path
    state: Path
    bin: Path

    def run(self, functions: str, *, uid: int = 1000) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "HOME": str(self.state),
            "STUB_STATE": str(self.state),
            "STUB_UID": str(uid),
            "REAL_PYTHON": sys.executable,
        }
        return subprocess.run(
            ["bash", "-c", f"set -euo pipefail; . scripts/lib/venv.sh; {functions}"],
            cwd=self.project,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    def log(self) -> list[str]:
        path = self.state / "log"
        return path.read_text().splitlines() if path.exists() else []

    @property
    def venv_python(self) -> Path:
        return self.project / ".venv" / "bin" / "python"


@pytest.fixture
def box(tmp_path: Path) -> Sandbox:
    project, state, stubs = tmp_path / "clone", tmp_path / "state", tmp_path / "stubs"
    (project / "scripts" / "lib").mkdir(parents=True)
    (project / "requirements").mkdir()
    state.mkdir()
    stubs.mkdir()
    shutil.copy(LIB, project / "scripts" / "lib" / "venv.sh")
    (project / "requirements" / "lock.txt").write_text("demo==1.0 --hash=sha256:00\n")
    (project / "requirements" / "runtime.txt").write_text("demo==1.0 --hash=sha256:00\n")
    (project / "pyproject.toml").write_text(PYPROJECT)
    for name, text in (("python3", STUB_PYTHON), ("id", STUB_ID), ("apt-get", STUB_APT)):
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    (state / "venv-module").touch()  # python3-venv is installed, unless a test removes it
    return Sandbox(project, state, stubs)


def test_second_run_reuses_the_venv_and_installs_nothing(box: Sandbox) -> None:
    first = box.run("redfix_venv && redfix_install")
    assert first.returncode == 0, first.stderr
    assert box.log() == [
        "venv .venv",
        "pip install -q --require-hashes --no-deps -r requirements/lock.txt",
        "pip install -q --no-deps --no-build-isolation -e .",
    ]
    before = os.stat(box.venv_python)

    second = box.run("redfix_venv && redfix_install")
    assert second.returncode == 0, second.stderr
    assert second.stdout == ""  # not a word: nothing to create, nothing to install
    assert len(box.log()) == 3
    after = os.stat(box.venv_python)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_changed_lock_is_installed_again(box: Sandbox) -> None:
    # the positive control of the test above: the stamp does notice a change
    assert box.run("redfix_venv && redfix_install").returncode == 0
    (box.project / "requirements" / "lock.txt").write_text("demo==1.1 --hash=sha256:11\n")
    assert box.run("redfix_venv && redfix_install").returncode == 0
    assert [line for line in box.log() if line.startswith("venv")] == ["venv .venv"]
    locked = "pip install -q --require-hashes --no-deps -r requirements/lock.txt"
    assert box.log().count(locked) == 2


def test_only_a_change_to_what_is_installed_reinstalls(box: Sandbox) -> None:
    assert box.run("redfix_venv && redfix_install").returncode == 0
    pyproject = box.project / "pyproject.toml"
    pyproject.write_text(PYPROJECT.replace("line-length = 100", "line-length = 99"))
    assert box.run("redfix_venv && redfix_install").returncode == 0
    assert len(box.log()) == 3  # a lint setting: nothing to install
    pyproject.write_text(PYPROJECT.replace("'a>=1'", "'a>=2'"))
    assert box.run("redfix_venv && redfix_install").returncode == 0
    assert len(box.log()) == 5  # a dependency range: the lock and redfix again


def test_the_demo_lock_is_not_installed_over_the_full_one(box: Sandbox) -> None:
    assert box.run("redfix_venv && redfix_install").returncode == 0
    demo = box.run('redfix_installed "$REDFIX_LOCK" || redfix_install requirements/runtime.txt')
    assert demo.returncode == 0, demo.stderr
    assert len(box.log()) == 3
    assert box.run("redfix_installed requirements/runtime.txt").returncode == 1


def test_a_broken_venv_is_made_again(box: Sandbox) -> None:
    assert box.run("redfix_venv").returncode == 0
    box.venv_python.write_text("#!/bin/bash\nexit 1\n")  # e.g. its base python was removed
    again = box.run("redfix_venv")
    assert again.returncode == 0, again.stderr
    assert ".venv is not a usable Python >= 3.11 venv; making it again" in again.stdout
    assert box.log() == ["venv .venv", "venv .venv"]
    assert box.run("redfix_venv").returncode == 0
    assert len(box.log()) == 2


def test_no_venv_module_and_not_root_says_exactly_what_to_install(box: Sandbox) -> None:
    (box.state / "venv-module").unlink()
    out = box.run("redfix_venv", uid=1000)
    assert out.returncode == 1
    assert "install it with: sudo apt-get install -y python3-venv" in out.stderr
    assert box.log() == []  # no apt-get, no venv
    assert not (box.project / ".venv").exists()


def test_no_venv_module_as_root_installs_it_with_apt(box: Sandbox) -> None:
    (box.state / "venv-module").unlink()
    out = box.run("redfix_venv", uid=0)
    assert out.returncode == 0, out.stderr
    assert box.log() == ["apt-get update -qq", "apt-get install -y -qq python3-venv", "venv .venv"]
    assert box.venv_python.exists()


def test_the_locked_build_tools_are_the_ones_pyproject_builds_with() -> None:
    # requirements/build.in repeats [build-system] requires so the lock pins them; keep in step
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    lines = (ROOT / "requirements" / "build.in").read_text().splitlines()
    assert sorted(build) == sorted(x for x in lines if x and not x.startswith("#"))


@pytest.mark.parametrize("lock", ["lock.txt", "runtime.txt"])
def test_every_locked_package_has_a_hash(lock: str) -> None:
    text = (ROOT / "requirements" / lock).read_text()
    entries = [e for e in text.replace("\\\n", " ").splitlines() if e and e[0].isalnum()]
    assert len(entries) > 30
    assert [e.split()[0] for e in entries if "--hash=sha256:" not in e] == []
    assert all("==" in e.split()[0] for e in entries)


def locked_pins(lock: str) -> dict[str, str]:
    text = (ROOT / "requirements" / lock).read_text()
    pins = re.findall(r"(?m)^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", text)
    return {canonicalize_name(name): version for name, version in pins}


def wanted(*, test: bool) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    if test:
        lines += project["optional-dependencies"]["test"]
    build = (ROOT / "requirements" / "build.in").read_text().splitlines()
    lines += [x for x in build if x.strip() and not x.startswith("#")]
    return [Requirement(x) for x in lines]


@pytest.mark.parametrize(("lock", "test"), [("lock.txt", True), ("runtime.txt", False)])
def test_the_lock_satisfies_every_range_in_pyproject(lock: str, test: bool) -> None:
    # a range changed in pyproject.toml without running scripts/lock fails here
    pins = locked_pins(lock)
    stale = [
        f"{req} (locked: {pins.get(canonicalize_name(req.name), 'missing')})"
        for req in wanted(test=test)
        if pins.get(canonicalize_name(req.name)) is None
        or not req.specifier.contains(pins[canonicalize_name(req.name)], prereleases=True)
    ]
    assert stale == [], "run scripts/lock"


def test_the_runtime_lock_is_the_full_lock_at_the_same_pins() -> None:
    full, runtime = locked_pins("lock.txt"), locked_pins("runtime.txt")
    assert {name: full.get(name) for name in runtime} == runtime
    assert "pytest" in full
    assert "pytest" not in runtime  # the container and the demo carry no test tools
    assert "matrix-synapse" not in runtime
