"""regswitch: a SIP softswitch with a VOS3000-style registration replace policy.

`make build` compiles the hot modules with mypyc (scripts/build-native.sh).
This file stays plain Python so it can refuse a compiled module older than
its source: Python imports an extension before the .py of the same name, and
would run yesterday's code without a word.
"""

from pathlib import Path

__version__ = "0.1.0"


def _refuse_stale_build() -> None:
    here = Path(__file__).parent
    for compiled in here.rglob("*.so"):
        source = compiled.with_name(compiled.name.split(".", 1)[0] + ".py")
        if source.exists() and source.stat().st_mtime > compiled.stat().st_mtime:
            raise ImportError(
                f"{source} changed after it was compiled: run `make build`"
                " (or `make clean-build` to run regswitch uncompiled)"
            )


_refuse_stale_build()
