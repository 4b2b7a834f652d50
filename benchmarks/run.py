"""Run every benchmark in ``benchmarks/``, print their tables and a summary of the goals.

    python benchmarks/run.py            # full versions (about half an hour on 2 CPU cores)
    python benchmarks/run.py --quick    # smaller versions, a few minutes in all
    python benchmarks/run.py hmm        # only bench_hmm.py
    python benchmarks/run.py --out DIR  # also keep each benchmark's JSON results in DIR
    python benchmarks/run.py --summarize DIR   # only the goals table, from JSON results in DIR

Each ``bench_*.py`` runs in a fresh process (so one benchmark's compilations and memory do not
colour another's), prints its own table of times and side-by-side ratios and writes its results
as JSON; the goals of the performance issue are then checked against those results.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def goals(results: dict) -> list[tuple[str, str, str]]:
    """(goal, measured, verdict) for each goal whose benchmark ran, from the JSON results."""
    rows = []
    hmm = results.get("bench_hmm")
    if hmm:
        s = hmm.get("summary", {})
        if "seq/dynamax" in s:
            d = s["seq/dynamax"]
            rows.append(
                (
                    "core: sequential no slower than dynamax (CPU)",
                    f"seq / dynamax median {d['median']:.2f}, range {d['min']:.2f}-{d['max']:.2f} "
                    f"over {d['n']} cells"
                    + "".join(
                        f"; {task} median {t['median']:.2f}, {t['at_most_1']} of {t['n']} <= 1"
                        for task in ("value", "value+grad")
                        if (t := s.get(f"seq/dynamax {task}"))
                    ),
                    "met" if d["max"] <= 1.0 else ("partly met" if d["min"] <= 1.0 else "not met"),
                )
            )
        else:
            rows.append(
                ("core: no slower than dynamax (CPU)", "dynamax not installed", "not measured")
            )
        if "par/seq" in s:
            d = s["par/seq"]
            rows.append(
                (
                    "core: parallel faster on GPU for long T",
                    f"no GPU; on CPU par / seq median {d['median']:.1f}",
                    "not measured",
                )
            )
    sw = results.get("bench_switching")
    if sw:
        worst = max(sw, key=lambda r: r["ratio"])
        each = ", ".join(f"{r['model']} {r['ratio']:.2f}x" for r in sw)
        rows.append(
            (
                "SVI step overhead vs hand-written JAX <= 1.3x",
                f"{each} (worst {worst['model']} {worst['ratio']:.2f}x)",
                "met" if worst["ratio"] <= 1.3 else "not met",
            )
        )
    meta = results.get("bench_meta")
    if meta:
        s, r = meta["scaling"], meta["rows"]
        cpu = meta.get("scaling_cpu")
        cpu_text = f"; CPU time slope {cpu['slope']:.2f}" if cpu else ""
        rows.append(
            (
                "meta-dssm step time linear or better in M",
                f"M {r[0]['M']}->{r[-1]['M']}: log-log slope {s['slope']:.2f}, per-recording "
                f"time x{s['per_recording_ratio']:.2f}{cpu_text}",
                "met" if s["slope"] <= 1.1 else "not met",
            )
        )
    ttf = results.get("bench_time_to_floor")
    if ttf:
        floor = ttf.get("floor")
        if floor is None:
            rows.append(("Lorenz floors in < 60 s", "data file absent", "not measured"))
        elif floor["first_met"] is None:
            rows.append(("Lorenz floors in < 60 s", "floors not met by any budget", "not met"))
        else:
            f = floor["first_met"]
            rows.append(
                (
                    "Lorenz floors in < 60 s (compile included)",
                    f"{f['fit_s']:.1f} s fit ({f['steps']} steps; CPU time "
                    f"{f.get('fit_cpu_s', float('nan')):.1f} s) + {f['eval_s']:.1f} s evaluate",
                    "met" if f["fit_s"] < 60 else "not met",
                )
            )
        adapt = ttf.get("adapt")
        if adapt:
            slowest = max(r["adapt_s"] for r in adapt["rows"])
            each = ", ".join(
                f"N={r['trials']}: {r['adapt_s']:.1f} s"
                + (f" (CPU {r['adapt_cpu_s']:.1f} s)" if "adapt_cpu_s" in r else "")
                for r in adapt["rows"]
            )
            rows.append(("few-shot adaptation < 20 s", each, "met" if slowest < 20 else "not met"))
    mem = results.get("bench_memory")
    if mem:
        steps = [r for r in mem if r["case"] != "baseline"]
        # The verdict is on the package's defaults (sequential core, long scans checkpointed);
        # the parallel core and the step without checkpointing are listed for information.
        judged = [r for r in steps if "parallel" not in r["case"] and "no check" not in r["case"]]
        failed = [r for r in judged if "error" in r]
        peak = max((r["peak_gb"] for r in judged if "peak_gb" in r), default=float("nan"))
        each = ", ".join(
            f"{r['case']} {r['peak_gb']:.2f} GB" if "peak_gb" in r else f"{r['case']} failed"
            for r in steps
        )
        rows.append(
            (
                f"peak memory T={steps[0]['T']}, K={steps[0]['K']}, {steps[0]['B']} trials < 4 GB",
                each,
                "met" if not failed and peak < 4.0 else "not met",
            )
        )
    return rows


def print_goals(results: dict) -> None:
    """Print the goals table (Markdown) for the given JSON results."""
    print("| goal | measured | verdict |\n|:--|:--|:--|")
    for goal, measured, verdict in goals(results):
        print(f"| {goal} | {measured} | {verdict} |")


def main(argv=None) -> int:
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("names", nargs="*", help="benchmarks to run (default: all), e.g. hmm")
    p.add_argument("--quick", action="store_true", help="smaller problem sizes")
    p.add_argument("--out", help="folder for each benchmark's JSON results (default: temporary)")
    p.add_argument("--summarize", metavar="DIR", help="print the goals from DIR's JSON and exit")
    args = p.parse_args(argv)
    if args.summarize:
        found = {
            f.stem: json.loads(f.read_text()) for f in Path(args.summarize).glob("bench_*.json")
        }
        print_goals(found)
        return 0
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.names:
        wanted = {f"bench_{n.removeprefix('bench_').removesuffix('.py')}.py" for n in args.names}
        unknown = wanted - {s.name for s in scripts}
        if unknown:
            p.error(f"no such benchmark: {', '.join(sorted(unknown))}")
        scripts = [s for s in scripts if s.name in wanted]
    out_dir = Path(args.out or tempfile.mkdtemp(prefix="neurodyn-bench-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    failed, results, total = [], {}, time.perf_counter()
    for script in scripts:
        print(f"\n=== {script.stem} {'(quick)' if args.quick else ''}", flush=True)
        start = time.perf_counter()
        out = out_dir / f"{script.stem}.json"
        cmd = [sys.executable, str(script), "--out", str(out)] + (["--quick"] if args.quick else [])
        status = subprocess.run(cmd, cwd=HERE.parent).returncode
        print(f"--- {script.stem}: {time.perf_counter() - start:.0f} s, exit {status}", flush=True)
        if status:
            failed.append(script.stem)
        elif out.exists():
            results[script.stem] = json.loads(out.read_text())
    print(f"\n=== goals ({time.perf_counter() - total:.0f} s in all; JSON in {out_dir})")
    print_goals(results)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
