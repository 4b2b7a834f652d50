"""Run every benchmark in ``benchmarks/`` and print their tables.

    python benchmarks/run.py            # full versions
    python benchmarks/run.py --quick    # smaller versions, a few minutes in all
    python benchmarks/run.py hmm        # only bench_hmm.py

Each ``bench_*.py`` runs in a fresh process (so one benchmark's compilations and memory do not
colour another's) and prints its own table of times and side-by-side ratios.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("names", nargs="*", help="benchmarks to run (default: all), e.g. hmm")
    p.add_argument("--quick", action="store_true", help="smaller problem sizes")
    args = p.parse_args(argv)
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.names:
        wanted = {f"bench_{n.removeprefix('bench_').removesuffix('.py')}.py" for n in args.names}
        unknown = wanted - {s.name for s in scripts}
        if unknown:
            p.error(f"no such benchmark: {', '.join(sorted(unknown))}")
        scripts = [s for s in scripts if s.name in wanted]
    failed = []
    for script in scripts:
        print(f"\n=== {script.stem} {'(quick)' if args.quick else ''}", flush=True)
        start = time.perf_counter()
        cmd = [sys.executable, str(script)] + (["--quick"] if args.quick else [])
        status = subprocess.run(cmd, cwd=HERE.parent).returncode
        print(f"--- {script.stem}: {time.perf_counter() - start:.0f} s, exit {status}", flush=True)
        if status:
            failed.append(script.stem)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
