"""Simulators that write session files (``neurodyn simulate NAME``).

Each simulator is ``fn(*, seed, likelihood, **options) -> Session | list[Session]``; a list means
one recording per file in a folder (multi-recording families).
"""

from __future__ import annotations

import importlib

# name -> "module:function", imported on use so that importing neurodyn stays cheap.
SIMULATORS = {
    "lorenz": "neurodyn.data.simulators.switching:simulate_lorenz",
    "nascar": "neurodyn.data.simulators.switching:simulate_nascar",
    "slds": "neurodyn.data.simulators.switching:simulate_slds",
    "input-switching": "neurodyn.data.simulators.switching:simulate_input_switching",
    "limit-cycle": "neurodyn.data.simulators.families:simulate_limit_cycles",
    "input-limit-cycle": "neurodyn.data.simulators.families:simulate_input_limit_cycles",
    "duffing": "neurodyn.data.simulators.families:simulate_duffing",
    "hopf": "neurodyn.data.simulators.families:simulate_hopf",
}


def get_simulator(name: str):
    if name not in SIMULATORS:
        raise ValueError(f"unknown simulator {name!r}; choose one of {', '.join(SIMULATORS)}")
    module, func = SIMULATORS[name].split(":")
    return getattr(importlib.import_module(module), func)
