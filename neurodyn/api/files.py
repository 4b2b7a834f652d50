"""Session files from simulators and public recordings (``neurodyn simulate`` / ``convert``)."""

from __future__ import annotations

import inspect
from pathlib import Path

from ..data import loaders, save_session, split_trials
from ..data.simulators import get_simulator
from ..errors import UsageError
from ..inference.run_folder import check_out, staged_files

CONVERTERS = ("dad-chewie", "dad-mihi-a", "dad-mihi-b", "widefield", "nlb", "nwb")
DEFAULT_DATA = Path("../shared/data")


def simulate(
    name: str,
    out,
    *,
    seed: int = 0,
    likelihood: str = "gaussian",
    trials: int | None = None,
    timesteps: int | None = None,
    neurons: int | None = None,
    recordings: int | None = None,
    test_out=None,
    test_trials: int = 4,
    overwrite: bool = False,
) -> str:
    """Write the simulation ``name`` to ``out`` (a ``.npz``, or a folder of recordings for
    multi-recording simulators); ``test_out`` also gets ``test_trials`` held-out trials of the
    same neurons. Returns the line saying what was written."""
    try:
        simulator = get_simulator(name)
    except ValueError as e:
        raise UsageError(str(e)) from None
    accepted = inspect.signature(simulator).parameters
    multi = "num_recordings" in accepted
    for option, value, applies in (
        ("--recordings", recordings, multi),
        ("--test-out", test_out, not multi),
    ):
        if value is not None and not applies:
            kind = "multi" if not multi else "single"
            raise UsageError(
                f"{option} does not apply to simulate {name} (it applies to "
                f"{kind}-recording simulators)"
            )
    out = Path(out)
    if multi:
        if out.suffix == ".npz":
            raise UsageError(f"simulate {name} writes several recordings: --out must be a folder")
        check_out(out, "recordings", overwrite=overwrite)
    else:
        if out.suffix != ".npz":
            out = out.with_suffix(".npz")
        check_out(out, "npz", overwrite=overwrite)
        if test_out:
            check_out(test_out, "npz", option="--test-out", overwrite=overwrite)
            if Path(test_out).resolve() == out.resolve():
                raise UsageError("--test-out must differ from --out")
    options = dict(
        num_trials=trials, num_timesteps=timesteps, num_neurons=neurons, num_recordings=recordings
    )
    options = {k: v for k, v in options.items() if v is not None}
    unknown = [k for k in options if k not in accepted]
    if unknown:
        flags = ", ".join("--" + k.removeprefix("num_") for k in unknown)
        raise UsageError(f"simulate {name}: {flags} does not apply to this simulator")
    result = simulator(seed=seed, likelihood=likelihood, **options)
    if isinstance(result, list):  # one file per recording, in a folder
        with staged_files(out) as tmp:
            for session in result:
                save_session(tmp / f"{session.name}.npz", session)
        return f"wrote {len(result)} recordings to {out}/"
    if test_out:
        train, test = split_trials(result, result.num_trials - test_trials)
        save_session(out, train)
        save_session(test_out, test)
        return f"wrote {out} ({train.num_trials} trials) and {test_out} ({test.num_trials} trials)"
    save_session(out, result)
    return (
        f"wrote {out} ({result.num_trials} trials x {result.num_timesteps} bins x "
        f"{result.num_neurons} neurons)"
    )


def convert(
    kind: str,
    source,
    out,
    *,
    window: int = 100,
    bin_size: float | None = None,
    overwrite: bool = False,
) -> str:
    """Turn a public recording (``kind`` in :data:`CONVERTERS`) into session files at ``out``
    (a ``.npz``; a folder for ``nlb``). Returns the line saying what was written."""
    source = Path(source) if source else None
    if kind not in CONVERTERS:
        raise UsageError(f"unknown recording kind {kind!r}; choose one of {', '.join(CONVERTERS)}")
    out = Path(out)
    if kind == "nlb":  # two recordings: a folder
        if out.suffix == ".npz":
            raise UsageError("convert nlb writes two recordings: --out must be a folder")
        check_out(out, "recordings", overwrite=overwrite)
    else:
        out = out if out.suffix == ".npz" else out.with_suffix(".npz")
        check_out(out, "npz", overwrite=overwrite)
    if kind.startswith("dad-"):
        sessions = [loaders.load_dad(source or DEFAULT_DATA, kind.removeprefix("dad-"))]
    elif kind == "widefield":
        path = source or DEFAULT_DATA / "widefield_higley_animal1.mat"
        sessions = [loaders.load_widefield(path, window=window)]
    elif kind == "nlb":
        fixture = source or DEFAULT_DATA / "nlb_mc_maze_small_20_fixture.npz"
        sessions = list(loaders.load_nlb_fixture(fixture))
    else:
        if source is None or bin_size is None:
            raise UsageError("convert nwb needs the .nwb file and --bin-size SECONDS")
        sessions = [loaders.load_nwb(source, bin_size)]
    if len(sessions) == 1:
        return f"wrote {save_session(out, sessions[0])}"
    with staged_files(out) as tmp:
        for session in sessions:
            save_session(tmp / f"{session.name}.npz", session)
    return f"wrote {', '.join(f'{out}/{x.name}.npz' for x in sessions)}"
