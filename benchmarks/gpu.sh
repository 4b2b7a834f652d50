#!/usr/bin/env bash
# The accelerator benchmark in one command (see benchmarks/README.md, "Accelerator preset"):
#
#     PYTHONPATH=$PWD bash benchmarks/gpu.sh --out results/gpu.json   # on a CUDA machine
#     PYTHONPATH=$PWD bash benchmarks/gpu.sh --quick                 # tiny sizes, any machine
#
# Runs `benchmarks/run.py --device` (the --device presets of bench_hmm, bench_switching and
# bench_meta, each in a fresh process): the discrete-state core, sequential vs parallel, at
# K = 8 and T up to 100000; the srnn SVI step with either core at 12 x 200 and 4 x 10000
# (trials x bins); the meta-dssm SVI step at M = 5 and 500. Prints the tables, the devices and
# the time taken, and writes every result to the JSON file given by --out. About 3-5 minutes on
# a GPU, compilation included; each benchmark is stopped at its share, 7 minutes in all at most.
# Needs jax, numpyro, equinox, optax (no arviz, h5netcdf or dynamax; dynamax, when importable,
# adds its column to the core's table). PYTHON selects the interpreter (default: python).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PYTHON="${PYTHON:-$(command -v python || command -v python3)}"
if command -v nvidia-smi >/dev/null 2>&1; then
    echo "# nvidia-smi: $(nvidia-smi --query-gpu=name,memory.total,driver_version \
        --format=csv,noheader 2>/dev/null | head -n 1)"
fi
exec "$PYTHON" benchmarks/run.py --device "$@"
