"""Wheel build hook: the hot path compiled with mypyc, in the wheel only.

`pip install .` and `python -m build` call this through hatchling. It copies
the package to a scratch directory, compiles the modules listed under
[tool.hatch.build.targets.wheel.hooks.custom] in pyproject.toml with mypyc and
adds the extensions to the wheel next to their sources (Python imports an
extension before the .py of the same name). The work tree is never touched, so
development and `make test` run the plain Python; an editable install is
never compiled.

Without a C compiler or the Python headers the wheel is built pure Python (the
same code, slower) with a message saying so; REGSWITCH_MYPYC=required turns
that into a failure (CI), REGSWITCH_MYPYC=off builds pure Python on purpose.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

MODES = ("auto", "required", "off")


def missing_toolchain() -> str | None:
    """Why C extensions cannot be built here, or None."""
    # setuptools, which mypyc drives, takes $CC first too
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler}; Debian: apt-get install gcc)"
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not headers.is_file():
        return f"no Python headers ({headers}; Debian: apt-get install python3-dev)"
    return None


class MypycBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        mode = os.environ.get("REGSWITCH_MYPYC", "auto")
        if mode not in MODES:
            raise SystemExit(f"regswitch-build: REGSWITCH_MYPYC={mode!r}, expected one of {MODES}")
        if mode == "off":
            self.say("REGSWITCH_MYPYC=off: building a pure-Python wheel")
            return
        reason = missing_toolchain()
        if reason is not None:
            self.fallback(mode, reason)
            return
        modules = self.modules()
        self.scratch = Path(tempfile.mkdtemp(prefix="regswitch-mypyc-"))
        shutil.copytree(
            Path(self.root) / "src" / "regswitch",
            self.scratch / "regswitch",
            # only sources: an extension left in the tree must not reach the wheel
            ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"),
        )
        self.say(f"compiling {len(modules)} modules with mypyc (under a minute on two cores)")
        result = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "compile", *modules],
            cwd=self.scratch,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            sys.stderr.write((result.stdout + result.stderr)[-4000:])
            self.fallback(mode, "mypyc failed (its output is above)")
            return
        # next to the sources, and the group's shared library at the top; not mypyc's build/
        extensions = sorted(
            path.relative_to(self.scratch)
            for path in self.scratch.rglob("*")
            if path.suffix in (".so", ".pyd")
        )
        extensions = [path for path in extensions if path.parts[0] != "build"]
        for path in extensions:
            build_data["force_include"][str(self.scratch / path)] = path.as_posix()
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        self.say(f"compiled: {len(extensions)} extension files in the wheel")

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        scratch = getattr(self, "scratch", None)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    def modules(self) -> list[str]:
        """The configured globs (relative to src/), minus the exclusions."""
        src = Path(self.root) / "src"
        excluded = {
            name for pattern in self.config.get("exclude", []) for name in self.expand(src, pattern)
        }
        modules: list[str] = []
        for pattern in self.config["compile"]:
            found = self.expand(src, pattern)
            if not found:
                raise SystemExit(f"regswitch-build: {pattern!r} (pyproject.toml) matches no module")
            modules += [name for name in found if name not in excluded and name not in modules]
        return modules

    @staticmethod
    def expand(src: Path, pattern: str) -> list[str]:
        return sorted(
            Path(path).relative_to(src).as_posix() for path in glob.glob(str(src / pattern))
        )

    def fallback(self, mode: str, reason: str) -> None:
        if mode == "required":
            raise SystemExit(f"regswitch-build: {reason} (REGSWITCH_MYPYC=required)")
        self.say(f"{reason}: building a pure-Python wheel (the same code, uncompiled and slower)")

    @staticmethod
    def say(message: str) -> None:
        # stderr, unbuffered: pip shows a build's output only with -v, `python -m build` always
        print(f"regswitch-build: {message}", file=sys.stderr, flush=True)


def compile_in_place(modules: list[str]) -> None:
    """mypyc, then the C compiler on every core; run in a child in the scratch copy.

    One C file per module (`multi_file`) instead of one 18 MB file: gcc -O3 on
    the single file was superlinear (about 70 s of CPU against 48 s), and
    separate files compile in parallel. Measured in-process (bench/inproc.py)
    the two builds cost the same per REGISTER, within noise.
    """
    # setuptools' copy of distutils (its .pth hook), the one build_ext uses; were it
    # the standard library's, the patch would be inert and gcc would run serially
    from distutils.ccompiler import CCompiler

    from mypyc.build import mypycify
    from setuptools import setup  # type: ignore[import-untyped]

    CCompiler.compile = _compile_in_parallel  # type: ignore[method-assign,assignment]
    setup(
        name="regswitch-mypyc",
        ext_modules=mypycify(modules, opt_level="3", multi_file=True),
        script_args=["build_ext", "--inplace"],
    )


def _compile_in_parallel(
    self: Any,
    sources: list[str],
    output_dir: str | None = None,
    macros: Any = None,
    include_dirs: Any = None,
    debug: bool = False,
    extra_preargs: Any = None,
    extra_postargs: Any = None,
    depends: Any = None,
) -> list[str]:
    """CCompiler.compile with the objects built concurrently (gcc runs as a child
    process, so threads are enough); otherwise the same steps as distutils'."""
    macros, objects, extra_postargs, pp_opts, build = self._setup_compile(
        output_dir, macros, include_dirs, sources, depends, extra_postargs
    )
    cc_args = self._get_cc_args(pp_opts, debug, extra_preargs)

    def one(obj: str) -> None:
        src, ext = build[obj]
        self._compile(obj, src, ext, cc_args, extra_postargs, pp_opts)

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(one, objects))  # list(): re-raise the first failure
    return list(objects)


if __name__ == "__main__" and sys.argv[1:2] == ["compile"]:
    compile_in_place(sys.argv[2:])
