"""The build under test, and the wheel build's fallback.

`make test` runs the work tree's plain Python; `make test-wheel` runs the same
suite against the compiled wheel installed in a venv of its own
(REGSWITCH_TEST_BUILD=wheel). These tests fail when the suite would silently
test the other one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import regswitch

ROOT = Path(__file__).resolve().parents[1]
WHEEL = os.environ.get("REGSWITCH_TEST_BUILD") == "wheel"


def test_the_suite_imports_the_build_it_means() -> None:
    package = Path(regswitch.__file__).resolve().parent
    if WHEEL:
        assert ROOT / "src" not in package.parents, package  # the installed wheel
        assert regswitch.compiled()
    else:
        assert package == ROOT / "src" / "regswitch"
        assert not regswitch.compiled()  # no compiled module shadows the sources


def test_version_says_which_build_runs(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "regswitch", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=True,
    )
    build = "compiled with mypyc" if WHEEL else "pure Python, not compiled"
    assert out.stdout == f"regswitch {regswitch.__version__} ({build})\n"


def build_wheel(out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "--target", "wheel", "--directory", str(out)],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_a_compiler_the_wheel_is_pure_python_and_says_so(tmp_path: Path) -> None:
    pytest.importorskip("hatchling")
    result = build_wheel(tmp_path, CC="/nonexistent/cc", REGSWITCH_MYPYC="auto")
    assert result.returncode == 0, result.stderr
    assert "no C compiler (/nonexistent/cc" in result.stderr
    assert "building a pure-Python wheel" in result.stderr
    (wheel,) = tmp_path.glob("*.whl")
    assert wheel.name.endswith("-py3-none-any.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "regswitch/sip/parse.py" in names
    assert not [name for name in names if name.endswith((".so", ".pyd"))]


def test_a_required_compiled_build_fails_without_a_compiler(tmp_path: Path) -> None:
    pytest.importorskip("hatchling")
    result = build_wheel(tmp_path, CC="/nonexistent/cc", REGSWITCH_MYPYC="required")
    assert result.returncode != 0
    assert "no C compiler" in result.stderr and "REGSWITCH_MYPYC=required" in result.stderr
    assert not list(tmp_path.glob("*.whl"))


def test_an_unknown_build_mode_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("hatchling")
    result = build_wheel(tmp_path, REGSWITCH_MYPYC="fast")
    assert result.returncode != 0 and "REGSWITCH_MYPYC='fast'" in result.stderr
