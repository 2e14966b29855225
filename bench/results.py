#!/usr/bin/env python3
"""bench/RESULTS.md from the JSON the benchmarks of one `make bench` wrote.

Each script of `make bench` writes its result with `--json DIR/NAME.json`;
this reads them back and writes one table: each figure, its reference
measured in the same run (Kamailio, or the sippy stack for the parser), the
ratio and the goal, with the date, the machine and the commands. A benchmark
that did not run is listed as such rather than left out.

    .venv-run/bin/python bench/results.py build/bench [--out bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

COMMANDS = """\
.venv-run/bin/python bench/parse.py    --json DIR/parse.json
.venv-run/bin/python bench/register.py --json DIR/register.json
.venv-run/bin/python bench/calls.py    --skip-kick --json DIR/calls.json
.venv-run/bin/python bench/kick.py     --json DIR/kick.json
.venv-run/bin/python bench/cpu.py      --json DIR/cpu.json
.venv-run/bin/python bench/memory.py   --rate 1500 --json DIR/memory.json
.venv-run/bin/python bench/latency.py  --json DIR/latency.json
.venv-run/bin/python bench/restart.py  --json DIR/restart.json
.venv-run/bin/python bench/results.py  DIR --out bench/RESULTS.md"""

Row = tuple[str, str, str, str, str, str]  # what, regswitch, reference, ratio, goal, met


def load(directory: Path, name: str) -> Any:
    path = directory / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def met(ok: bool | None) -> str:
    return "—" if ok is None else ("yes" if ok else "**no**")


def sipp_cpu(summaries: list[dict[str, Any]]) -> str:
    """SIPp's highest CPU over a comparison's runs: near 100 % it measured SIPp."""
    cpus = [s["sipp_cpu"] for s in summaries if s.get("sipp_cpu") is not None]
    return f" (SIPp ≤ {max(cpus):.0f} %)" if cpus else ""


def rate_row(what: str, r: dict[str, Any] | None, goal: float | None) -> Row:
    if r is None:
        return (what, "not run", "", "", "", "")
    ratio = r["ratio"]
    return (
        what,
        f"{r['regswitch_median']:,.0f}/s{sipp_cpu(r['regswitch'])}",
        f"Kamailio 1 child {r['kamailio_median']:,.0f}/s{sipp_cpu(r['kamailio'])}",
        f"{ratio:.2f}×" if ratio is not None else "—",
        f"≥ {goal:.1f}×" if goal is not None else "",
        met(None if goal is None or ratio is None else ratio >= goal),
    )


def cpu_row(what: str, r: dict[str, Any] | None, goal: float) -> Row:
    if r is None:
        return (what, "not run", "", "", "", "")
    rs, kam, ratio = r["regswitch_us"], r["kamailio_us"], r["ratio"]
    return (
        what,
        f"{rs} µs" if rs is not None else "step failed",
        f"Kamailio 1 child {kam} µs" if kam is not None else "step failed",
        f"{ratio:.2f}×" if ratio is not None else "—",
        f"≤ {goal:.1f}× (lower is better)",
        met(None if ratio is None else ratio <= goal),
    )


def rows(d: Path) -> list[Row]:
    out: list[Row] = []
    parse = load(d, "parse")
    for p in parse or []:
        sippy = p["sippy_per_s"]
        out.append((
            f"{p['message']} parse + reads + serialise (`parse.py`)",
            f"{p['regswitch_per_s']:,.0f}/s",
            f"sippy {sippy:,.0f}/s" if sippy else "sippy not installed",
            f"{p['ratio']:.2f}×" if p["ratio"] else "—", "", "",
        ))  # fmt: skip
    register = load(d, "register") or [None, None]
    out.append(rate_row("REGISTER with digest, full registrations/s, SQLite write-through "
                        "(`register.py`)", register[0], 1.0))  # fmt: skip
    out.append(rate_row("OPTIONS/s (`register.py`)", register[1] if len(register) > 1 else None,
                        None))  # fmt: skip
    out.append(rate_row("calls/s INVITE/180/200/ACK/BYE, B2BUA vs stateful proxy (`calls.py`)",
                        load(d, "calls"), 1.0))  # fmt: skip
    cpu = load(d, "cpu") or [None, None]
    for r, goal in zip(cpu, (1.0, 1.0), strict=True):
        what = "server CPU per OPTIONS" if r is None or r["scenario"] == "options" else (
            "server CPU per call")  # fmt: skip
        rate = f" at {r['rate']:,}/s" if r is not None else ""
        out.append(cpu_row(f"{what}{rate} (`cpu.py`)", r, goal))
    memory = load(d, "memory")
    out.append(
        ("RSS, whole process, with 100,000 accounts + 100,000 bindings (`memory.py`)", "not run",
         "", "", "", "") if memory is None else (
            f"RSS, whole process, {memory['accounts']:,} accounts + {memory['bindings']:,} "
            "bindings (`memory.py`)",
            f"{memory['whole_mib']:.0f} MiB ({memory['per_1k_accounts_mib']:.2f} MiB per 1k "
            f"accounts, {memory['per_1k_bindings_mib']:.2f} per 1k bindings)",
            "", "", "≤ 150 MB at 100,000 each",
            met(memory["whole_mib"] * 1.048576 <= 150 if memory["accounts"] >= 100_000 else None),
        )
    )  # fmt: skip
    latency = load(d, "latency")
    if latency is None:
        out.append(("full digest REGISTER latency (`latency.py`)", "not run", "", "", "", ""))
    else:
        rs, kam = latency["regswitch"], latency.get("kamailio")
        for q in ("p50", "p99"):
            ratio = rs["full_ms"][q] / kam["full_ms"][q] if kam else None
            out.append((
                f"full digest REGISTER {q} at {latency['rate']:.0f}/s with "
                f"{rs['bindings']:,} bindings, client µs clock, durable (`latency.py`)",
                f"{rs['full_ms'][q]:.2f} ms (answer to the challenge {rs['answer_ms'][q]:.2f})",
                f"Kamailio 1 child {kam['full_ms'][q]:.2f} ms" if kam else "not run",
                f"{ratio:.1f}× the time" if ratio else "—",
                "≤ 1 ms" if q == "p99" else "",
                met(rs["full_ms"][q] <= 1.0) if q == "p99" else "",
            ))  # fmt: skip
    kick = load(d, "kick")
    out.append(
        ("kick: new device's REGISTER → both BYEs (`kick.py`)", "not run", "", "", "", "")
        if kick is None else (
            f"kick: new device's REGISTER → both BYEs, {kick['kicks']:,} kicks (`kick.py`)",
            f"p50 {kick['p50_ms']:.2f} ms, p99 {kick['p99_ms']:.2f} ms", "", "", "p99 ≤ 20 ms",
            met(kick["p99_ms"] <= 20),
        )
    )  # fmt: skip
    restart = load(d, "restart")
    out.append(
        ("restart with 1,000,000 bindings stored (`restart.py`)", "not run", "", "", "", "")
        if restart is None else (
            f"restart with {restart['bindings']:,} accounts and bindings stored: start to the "
            "first answered REGISTER; to a full registration's answer; to the end of the "
            "restore, and RSS then (`restart.py`)",
            f"{restart['first_answer_s']:.1f} s; {restart['registered_s']:.1f} s "
            f"({restart['full_registration']}); {restart['restored_s']:.1f} s, "
            f"{restart['rss_restored_mib']:,.0f} MiB", "", "",
            "≤ 10 s, < 1.5 GB at 1,000,000",
            met(restart["first_answer_s"] <= 10 and restart["rss_restored_mib"] < 1536
                if restart["bindings"] >= 1_000_000 else None),
        )
    )  # fmt: skip
    return out


def first_line(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None:
        return f"{argv[0]}: not installed"
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].removeprefix("version: ").strip() if lines else "?"


def machine() -> list[str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")),
        platform.processor() or "?",
    )
    mem_kib = next(
        int(ln.split()[1])
        for ln in Path("/proc/meminfo").read_text().splitlines()
        if ln.startswith("MemTotal")
    )
    build = first_line([sys.executable, "-m", "regswitch", "--version"])
    return [
        f"- CPU: {model}, {os.cpu_count()} logical CPUs; memory {mem_kib / 2**20:.0f} GiB; "
        f"Linux {platform.release()}",
        f"- Python {platform.python_version()}; {build}",
        f"- {first_line(['kamailio', '-v'])}; {first_line(['sipp', '-v'])}",
        # other work on the machine stretches every figure: say how busy it was
        f"- load average (1 / 5 / 15 minutes) when this file was written: "
        f"{' / '.join(Path('/proc/loadavg').read_text().split()[:3])}",
    ]


def render(directory: Path, now: float, about: Callable[[], list[str]] = machine) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (bench/results.py); the last benchmark ended "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(now))}. The server runs on CPU 0 and "
        "SIPp on the last CPU for regswitch and Kamailio alike; each comparison is interleaved "
        "repetitions in this one run, and the ratio is of their medians (bench/README.md, "
        '"Method"). Absolute figures move between machines and runs; ratios less so.',
        "",
        *about(),
        "",
        "| what | regswitch | reference, same run | ratio | goal | met |",
        "|---|---|---|---|---|---|",
        *("| " + " | ".join(row) + " |" for row in rows(directory)),
        "",
        "Commands (`make bench` runs them in this order, DIR = build/bench):",
        "",
        "```sh",
        COMMANDS,
        "```",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("directory", type=Path, help="where the benchmarks wrote their JSON")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    a = parser.parse_args()
    ended = max((f.stat().st_mtime for f in a.directory.glob("*.json")), default=time.time())
    a.out.write_text(render(a.directory, ended))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
