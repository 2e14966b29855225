"""Test-support harness: a real server subprocess, a Python test UA, SIPp and
PJSIP drivers, and a self-signed certificate helper.

Importable as `support` from any test (tests/conftest.py puts tests/ on
sys.path): `from support.ua import UA`.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

TESTS_DIR = Path(__file__).resolve().parent.parent
SIPP_DIR = TESTS_DIR / "sipp"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _missing(what: str, hint: str) -> None:
    message = f"{what} is not available ({hint})"
    if in_ci():
        # CI must not go green by skipping: the set-up should have installed it.
        pytest.fail(f"{message}; CI=true, so this is a failure, not a skip", pytrace=False)
    pytest.skip(message)


def require_tool(name: str, hint: str | None = None) -> str:
    """Path of executable `name` (or an absolute path). Skips when it is
    missing locally; fails when CI=true."""
    found = shutil.which(name) if not os.path.isabs(name) else None
    if found is None and os.path.isabs(name) and os.access(name, os.X_OK):
        found = name
    if found is None:
        _missing(name, hint or "run `make system`")
    assert found is not None
    return found


def require_module(name: str, hint: str | None = None) -> None:
    """Skip (locally) or fail (CI) unless Python module `name` imports."""
    if importlib.util.find_spec(name) is None:
        _missing(f"Python module {name}", hint or "run `make venv`")


def sipp_scenario(name: str) -> Path:
    """tests/sipp/<name>.xml"""
    path = SIPP_DIR / (name if name.endswith(".xml") else f"{name}.xml")
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


T = TypeVar("T")


def wait_until(
    check: Callable[[], T], timeout: float, what: str = "condition", interval: float = 0.05
) -> T:
    """Call `check` until it returns something truthy; that value, or AssertionError
    (with the last value seen) after `timeout` seconds. For state seen only by
    polling (the API, a SIPp trace file): there is no event to wait on."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {value!r}")
        time.sleep(interval)
