"""regswitch: a SIP softswitch with a VOS3000-style registration replace policy.

The work tree is plain Python. A wheel built with `pip install .` or
`python -m build` carries the hot path compiled with mypyc next to the same
sources (hatch_build.py); `regswitch --version` says which one runs.
"""

from importlib.machinery import EXTENSION_SUFFIXES
from importlib.util import find_spec

__version__ = "0.1.0"


def compiled() -> bool:
    """Whether the mypyc-compiled hot path is in use (the SIP parser stands for all of it:
    the wheel compiles its modules together or none)."""
    spec = find_spec("regswitch.sip.parse")
    origin = spec.origin if spec is not None else None
    return origin is not None and origin.endswith(tuple(EXTENSION_SUFFIXES))


def version_text() -> str:
    build = "compiled with mypyc" if compiled() else "pure Python, not compiled"
    return f"regswitch {__version__} ({build})"
