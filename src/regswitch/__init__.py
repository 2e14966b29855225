"""regswitch: a SIP softswitch with a VOS3000-style registration replace policy.

`make build` compiles the hot modules with mypyc (scripts/build-native.sh).
This file stays plain Python so it can refuse a compiled module whose source
changed since: Python imports an extension before the .py of the same name,
and would run yesterday's code without a word. Sources are compared by
content (the build's sha256 list), so copying a built tree is fine.
"""

import hashlib
from pathlib import Path

__version__ = "0.1.0"


def refuse_stale_build(here: Path) -> None:
    """Raise ImportError if the package at `here` holds compiled modules and a
    source listed by the build changed since (or the list is missing)."""
    if next(here.rglob("*.so"), None) is None:
        return  # not compiled: plain Python
    hint = "run `make build` (or `make clean-build` to run regswitch uncompiled)"
    try:
        listed = (here / ".compiled").read_text().splitlines()
    except OSError:
        raise ImportError(f"compiled modules in {here} without their build list: {hint}") from None
    for line in listed:
        digest, _, name = line.partition("  ")
        source = here.parent / name
        try:
            current = hashlib.sha256(source.read_bytes()).hexdigest()
        except OSError:
            current = ""
        if current != digest:
            raise ImportError(f"{source} changed after it was compiled: {hint}")


refuse_stale_build(Path(__file__).parent)
