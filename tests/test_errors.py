"""The exception tree (bot/errors.py): every public error redfix raises descends from
RedfixError, on the branch its docstring names."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import bot
from bot.adapters.gitea import payload as gitea_door
from bot.adapters.matrix import payload as matrix_door
from bot.model import errors


def _public_errors() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(bot.__path__, "bot."):
        if info.name.startswith("bot.sim") or info.name == "bot.__main__":
            continue  # the simulators are test doubles, not the bot
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == info.name
                and not name.startswith("_")
            ):
                found[name] = obj
    return found


def test_every_public_error_is_a_redfix_error_on_its_branch() -> None:
    found = _public_errors()
    # Not vacuous: the walk sees the errors the tree is about.
    assert {"GiteaError", "RunnerError", "ConfigError", "PayloadError", "ForgeUnavailable"} <= set(
        found
    )
    outside = sorted(n for n, c in found.items() if not issubclass(c, errors.RedfixError))
    assert outside == []
    branches = {
        "input": {"PayloadError", "ConfigError", "RulesError", "ResultsError"},
        "unavailable": {"ForgeUnavailable"},
        "external": {
            "GiteaError",
            "RunnerError",
            "MatrixError",
            "DeliveryError",
            "StoreError",
            "FileError",
            "NoSuchFile",
            "TooBig",
        },
    }
    base = {
        "input": errors.InputError,
        "unavailable": errors.Unavailable,
        "external": errors.ExternalError,
    }
    for branch, names in branches.items():
        for name in names:
            assert issubclass(found[name], base[branch]), (name, branch)
    for name in branches["input"]:
        assert issubclass(found[name], ValueError)  # callers that catch ValueError still do


def test_both_doors_raise_the_one_payload_error() -> None:
    with pytest.raises(errors.PayloadError):
        gitea_door.to_incoming("issue_comment", "d1", b"[", "redfix")
    with pytest.raises(errors.PayloadError):
        matrix_door.to_incoming("matrix:$1", b"[", "@redfix:hs")
