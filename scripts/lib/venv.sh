# shellcheck shell=bash
# The project's virtual environment, shared by scripts/test, scripts/demo and scripts/lock.
# Sourced, not run. Debian 12 marks its python3 "externally managed" (PEP 668): pip refuses to
# install outside a venv, so everything goes into $REDFIX_VENV (.venv in the clone), made once
# and reused. Set REDFIX_PYTHON to build it from another interpreter (default: python3).
#
#   redfix_venv        make sure a usable venv exists (create, or recreate a broken one)
#   redfix_install [L] install lock file L (default requirements/lock.txt: runtime, test and
#                      build dependencies; hashes checked) and redfix itself, skipped when L
#                      and pyproject.toml have not changed since the last install from L
#   redfix_need_apt P  install Debian package P when missing (root: apt-get; else say how)

REDFIX_VENV=${REDFIX_VENV:-.venv}
REDFIX_PYTHON=${REDFIX_PYTHON:-python3}
REDFIX_LOCK=${REDFIX_LOCK:-requirements/lock.txt}
VENV_PY="$REDFIX_VENV/bin/python"

say() { printf '== %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Install a Debian package: directly as root, else stop and say the exact command.
redfix_need_apt() {
    local pkg=$1 why=$2
    if [ "$(id -u)" -ne 0 ]; then
        die "$why: install it with: sudo apt-get install -y $pkg"
    fi
    command -v apt-get >/dev/null 2>&1 || die "$why, and there is no apt-get here: install $pkg"
    say "installing $pkg ($why)"
    apt-get update -qq || die "apt-get update failed (needed to install $pkg)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null \
        || die "apt-get install $pkg failed"
}

# True when the venv's interpreter starts, is Python >= 3.11 and has pip: a venv whose base
# interpreter was removed or upgraded away fails here and is made again.
_venv_usable() {
    [ -x "$VENV_PY" ] && "$VENV_PY" -c '
import sys
import pip  # noqa: F401
sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}

redfix_venv() {
    if _venv_usable; then
        return 0
    fi
    if [ -e "$REDFIX_VENV" ]; then
        say "$REDFIX_VENV is not a usable Python >= 3.11 venv; making it again"
        rm -rf "$REDFIX_VENV"
    fi
    command -v "$REDFIX_PYTHON" >/dev/null 2>&1 \
        || die "$REDFIX_PYTHON not found: install Python 3.11 or newer (Debian: apt-get install python3)"
    "$REDFIX_PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
        || die "$REDFIX_PYTHON is older than 3.11; set REDFIX_PYTHON to a Python 3.11 or newer"
    # Debian ships venv's pip bootstrap (ensurepip) in a separate package, python3-venv.
    if ! "$REDFIX_PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        redfix_need_apt python3-venv "$REDFIX_PYTHON has no venv/ensurepip module"
    fi
    say "creating the project venv in $REDFIX_VENV"
    if ! "$REDFIX_PYTHON" -m venv "$REDFIX_VENV"; then
        rm -rf "$REDFIX_VENV"
        die "could not create $REDFIX_VENV with $REDFIX_PYTHON -m venv"
    fi
    _venv_usable || die "$REDFIX_VENV was created but its python does not run"
}

# A stamp per lock file records what was installed from it: the hash of the lock and of the
# parts of pyproject.toml an install depends on ([project], [build-system], [tool.setuptools];
# a new lint rule or test setting needs no reinstall). Same stamp, no work: a second run of
# scripts/test or scripts/demo installs nothing.
_stamp_file() { printf '%s/.redfix-installed-%s' "$REDFIX_VENV" "$(basename "$1")"; }
_stamp() {
    {
        cat "$1"
        "$VENV_PY" -c '
import json, tomllib
with open("pyproject.toml", "rb") as f:
    doc = tomllib.load(f)
parts = {k: doc.get(k) for k in ("project", "build-system")}
parts["setuptools"] = doc.get("tool", {}).get("setuptools")
print(json.dumps(parts, sort_keys=True))'
    } | sha256sum | cut -d' ' -f1
}

# True when everything in lock file $1 (and redfix itself) is installed as the stamp says.
redfix_installed() {
    local stamp_file
    stamp_file=$(_stamp_file "$1")
    [ -f "$1" ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$(_stamp "$1")" ]
}

# Install lock file $1 (default: the full lock) into the venv, then redfix itself.
redfix_install() {
    local lock=${1:-$REDFIX_LOCK}
    [ -f "$lock" ] || die "$lock is missing (scripts/lock makes it)"
    if redfix_installed "$lock"; then
        return 0
    fi
    say "installing the locked dependencies from $lock into $REDFIX_VENV (hashes checked)"
    # The lock pins every package, build tools included, with hashes; --no-deps so nothing
    # unpinned slips in, --no-build-isolation so redfix builds with the locked setuptools.
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV_PY" -m pip install -q --require-hashes --no-deps \
        -r "$lock" || die "installing from $lock failed"
    say "installing redfix itself (editable)"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV_PY" -m pip install -q --no-deps \
        --no-build-isolation -e . || die "installing redfix failed"
    _stamp "$lock" >"$(_stamp_file "$lock")"
}
