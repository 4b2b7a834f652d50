"""Shared fixtures. Tests that need ../shared/data skip with a reason when it is absent."""

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# The suite's time is mostly XLA compiling many small programs once each, not running them:
# without LLVM's optimisation passes it runs in 9.5 instead of 13 minutes on 2 cores, with the
# same results to the tests' tolerances. Set before JAX starts its backend; a caller's
# XLA_FLAGS wins.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

# Many tests compile the same programs (same tiny data, same options): JAX's persistent
# compilation cache, in a folder of this run only (shared by the pytest-xdist workers, who
# inherit it from the controller or share its run id) and removed at the end, compiles each
# once. A caller's JAX_COMPILATION_CACHE_DIR wins (and is left alone).
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"{os.getpid()}"
    _CACHE = Path(tempfile.gettempdir()) / f"neurodyn-test-xla-cache-{_run}"
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(_CACHE)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
else:
    _CACHE = None


def pytest_unconfigure(config):
    if _CACHE is not None and not hasattr(config, "workerinput"):  # the controller, at the end
        shutil.rmtree(_CACHE, ignore_errors=True)


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared recordings not found at {SHARED_DATA} (not part of the repository)")
    return SHARED_DATA


CASE_STUDIES = Path(__file__).resolve().parents[1] / "case_studies"


def load_case_study(name: str):
    """The case-study script ``case_studies/<name>.py`` imported as a module (its helpers)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, CASE_STUDIES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def strict_json(text: str):
    """``json.loads`` that refuses NaN and Infinity (Python's parser accepts them; strict JSON
    parsers do not): ``ValueError`` naming the constant."""

    def refuse(name):
        raise ValueError(f"non-strict JSON constant {name}")

    return json.loads(text, parse_constant=refuse)
