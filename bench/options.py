#!/usr/bin/env python3
"""OPTIONS over UDP: regswitch vs Kamailio 1 child, interleaved, ratio of medians.

.venv-run/bin/python bench/options.py [--reps 3]
"""

from __future__ import annotations

import argparse

from common import compare, save_json
from sweep import Sweep

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", help="write the result here")
    a = parser.parse_args()
    sweep = Sweep("options", start=8000, factor=2, bisect=2, duration=2)
    result = compare(sweep, "none", a.reps)
    save_json(a.json, result)
