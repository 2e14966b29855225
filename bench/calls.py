#!/usr/bin/env python3
"""Call setup rate: SIPp UAC -> regswitch (B2BUA) -> registered SIPp UAS,
INVITE/180/200/ACK/BYE, next to Kamailio 1 child proxying the same scenario
statefully; 3 interleaved repetitions, ratio of the medians. Then the kick
latency (bench/kick.py).

    .venv-run/bin/python bench/calls.py [--reps 3] [--skip-kick]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from common import compare, save_json
from sweep import Sweep

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--skip-kick", action="store_true")
    parser.add_argument("--json", help="write the result here")
    a = parser.parse_args()
    sweep = Sweep("call", start=250, factor=2, bisect=3, duration=3, pause_ms=0)
    result = compare(sweep, "none", a.reps)
    save_json(a.json, result)
    if not a.skip_kick:
        subprocess.run([sys.executable, str(Path(__file__).with_name("kick.py"))], check=False)
