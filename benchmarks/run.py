"""Run every benchmark in ``benchmarks/``, print their tables and a summary of the goals.

    python benchmarks/run.py            # full versions (about half an hour on 2 CPU cores)
    python benchmarks/run.py --quick    # smaller versions, a few minutes in all
    python benchmarks/run.py hmm        # only bench_hmm.py
    python benchmarks/run.py --out DIR  # also keep each benchmark's JSON results in DIR
    python benchmarks/run.py --summarize DIR   # only the goals table, from JSON results in DIR
    python benchmarks/run.py --device --out gpu.json   # accelerator preset (benchmarks/gpu.sh)
    python benchmarks/run.py --device --quick          # the same at tiny sizes (a check on CPU)

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
        backend = hmm.get("machine", {}).get("backend", "cpu")
        if "par/seq" in s and backend == "cpu":
            d = s["par/seq"]
            rows.append(
                (
                    "core: parallel faster on GPU for long T",
                    f"no GPU; on CPU par / seq median {d['median']:.1f}",
                    "not measured",
                )
            )
        elif "par/seq" in s:
            longest = {}  # task -> the row of the largest T with both forms timed
            for r in hmm["results"]:
                if r.get("par/seq") and r["T"] >= longest.get(r["task"], {}).get("T", 0):
                    longest[r["task"]] = r
            rows.append(
                (
                    "core: parallel faster on GPU for long T",
                    f"{backend}: par / seq "
                    + ", ".join(
                        f"{task} {r['par/seq']:.2f} (T = {r['T']}, K = {r['K']})"
                        for task, r in longest.items()
                    ),
                    "met" if all(r["par/seq"] < 1 for r in longest.values()) else "not met",
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
    if meta and "scaling" in meta:
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


# The accelerator preset: (benchmark, seconds it may take). A benchmark starts no further cell
# (shape, M) once its share less a margin is spent and is stopped at its share; time a
# benchmark leaves unused passes to the next. About 7 minutes in all at most, 3-5 expected.
DEVICE_PARTS = (("hmm", 170, 50), ("switching", 140, 80), ("meta", 120, 40))


def run_device(out: str | None, quick: bool) -> int:
    """Run the accelerator preset of ``bench_hmm``, ``bench_switching`` and ``bench_meta``
    (each with ``--device``, in a fresh process), print one summary and write one JSON."""
    import platform

    start = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="neurodyn-device-"))
    results, parts, spare = {}, {}, 0.0
    for name, share, margin in DEVICE_PARTS:
        budget = share + spare
        path = folder / f"bench_{name}.json"
        cmd = [sys.executable, str(HERE / f"bench_{name}.py"), "--device", "--out", str(path)]
        cmd += ["--quick"] if quick else ["--budget-s", f"{budget - margin:.0f}"]
        print(f"\n=== bench_{name} --device{' --quick' if quick else ''}", flush=True)
        t0 = time.perf_counter()
        try:
            status = subprocess.run(
                cmd, cwd=HERE.parent, timeout=None if quick else budget
            ).returncode
        except subprocess.TimeoutExpired:
            status = f"stopped after {budget:.0f} s"
        took = time.perf_counter() - t0
        spare = max(0.0, budget - took)
        parts[name] = dict(seconds=took, exit=status)
        print(f"--- bench_{name}: {took:.0f} s, exit {status}", flush=True)
        if path.exists():
            results[name] = json.loads(path.read_text())
    total = time.perf_counter() - start
    machine = next((r["machine"] for r in results.values() if "machine" in r), {})
    print(f"\n=== accelerator preset{' (quick)' if quick else ''}: {total:.0f} s in all")
    print(
        f"# devices: {', '.join(machine.get('devices', ['unknown']))}; JAX "
        f"{machine.get('jax', '?')} ({machine.get('backend', '?')}); Python "
        f"{platform.python_version()}"
    )
    print_device_summary(results)
    print()
    goal_input = {f"bench_{n}": results[n] for n in ("hmm", "meta") if n in results}
    print_goals(goal_input)
    failed = [n for n, p in parts.items() if p["exit"] != 0]
    if failed:
        print(f"\nfailed or stopped: {', '.join(failed)}")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(
            json.dumps(
                dict(
                    preset="device-quick" if quick else "device",
                    machine=machine,
                    seconds=total,
                    parts=parts,
                    goals=[dict(goal=g, measured=m, verdict=v) for g, m, v in goals(goal_input)],
                    **{f"bench_{n}": r for n, r in results.items()},
                ),
                indent=2,
            )
            + "\n"
        )
        print(f"# results written to {out}")
    return 1 if failed else 0


def device_rows(results: dict) -> list[tuple[str, str, str, str, str, str]]:
    """(part, size, seq ms, par ms, par / seq, compile s seq / par) of the core and srnn cells."""

    def ms(res):
        return f"{1e3 * res['run_s']:.2f}" if "run_s" in res else "skip"

    def compiled(*sides):
        return " / ".join(f"{s['compile_s']:.1f}" if "compile_s" in s else "-" for s in sides)

    rows = []
    for r in results.get("hmm", {}).get("results", []):
        seq, par = r.get("seq", {}), r.get("par", {})
        ratio = f"{r['par/seq']:.2f}" if r.get("par/seq") else "-"
        size = f"T={r['T']}, K={r['K']}, B={r['B']}"
        rows.append((f"core {r['task']}", size, ms(seq), ms(par), ratio, compiled(seq, par)))
    for r in results.get("switching", {}).get("rows", []):
        size = f"{r['trials']} trials x {r['T']} bins"
        if "skipped" in r:
            rows.append(("srnn SVI step", size, "skip", "skip", "-", r["skipped"]))
            continue
        seq, par = r["seq"], r["par"]
        rows.append(
            (
                f"srnn SVI step (K={r['K']}, D={r['D']})",
                size,
                f"{1e3 * seq['step_s']:.2f}",
                f"{1e3 * par['step_s']:.2f}",
                f"{r['par/seq']:.2f}",
                compiled(seq, par),
            )
        )
    return rows


def print_device_summary(results: dict) -> None:
    """The accelerator preset's tables: core and srnn step (sequential vs parallel core), and
    the meta-dssm step against M."""
    print("| part | size | seq (ms) | par (ms) | par / seq | compile seq / par (s) |")
    print("|:--|:--|--:|--:|--:|--:|")
    for row in device_rows(results):
        print("| " + " | ".join(row) + " |")
    for r in results.get("hmm", {}).get("results", []):
        for method in ("seq", "par", "dynamax"):
            if "skipped" in r.get(method, {}):
                print(f"# T={r['T']} K={r['K']} {r['task']} {method}: {r[method]['skipped']}")
    meta = results.get("meta")
    if meta:
        print(
            "\n| meta-dssm SVI step | trials/rec x bins, per step | s / step "
            "| ms / step / recording | compile (s) |"
        )
        print("|:--|:--|--:|--:|--:|")
        for r in meta["rows"]:
            print(
                f"| M = {r['M']} | {meta.get('trials', '?')} x {meta.get('timesteps', '?')}, "
                f"{meta.get('batch', '?')} | {r['step_s']:.4f} | {1e3 * r['step_s'] / r['M']:.3f} "
                f"| {r['compile_s']:.1f} |"
            )
        if "scaling" in meta:
            print(f"# log-log slope in M: {meta['scaling']['slope']:.2f}")


def main(argv=None) -> int:
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("names", nargs="*", help="benchmarks to run (default: all), e.g. hmm")
    p.add_argument("--quick", action="store_true", help="smaller problem sizes")
    p.add_argument(
        "--device",
        action="store_true",
        help="accelerator preset (core, srnn step, meta-dssm step at M = 500); --out is "
        "then the path of one JSON file",
    )
    p.add_argument("--out", help="folder for each benchmark's JSON results (default: temporary)")
    p.add_argument("--summarize", metavar="DIR", help="print the goals from DIR's JSON and exit")
    args = p.parse_args(argv)
    if args.device:
        if args.names or args.summarize:
            p.error("--device runs its own set of benchmarks")
        return run_device(args.out, args.quick)
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
