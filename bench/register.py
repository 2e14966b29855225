#!/usr/bin/env python3
"""REGISTER benchmarks: regswitch (SQLite write-through) vs Kamailio 1 child.

Full registrations per second with digest (401 + 200) against Kamailio with
passwords in its in-memory htable, and OPTIONS, each as 3 interleaved
repetitions; prints the ratios of the medians.

    .venv-run/bin/python bench/register.py [--reps 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json

from common import compare
from sweep import Sweep

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--skip-options", action="store_true")
    parser.add_argument("--json", help="write the results here")
    a = parser.parse_args()
    results = [
        compare(
            Sweep("register_digest", start=2000, factor=2, bisect=3, duration=3), "htable", a.reps
        )
    ]
    if not a.skip_options:
        results.append(
            compare(Sweep("options", start=8000, factor=2, bisect=2, duration=2), "none", a.reps)
        )
    for r in results:
        print(
            f"{r['scenario']}: ratio {r['ratio']} (regswitch {r['regswitch_median']}/s, "
            f"Kamailio {r['kamailio_median']}/s)"
        )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)
