"""Families of related dynamical systems, one recording per member (meta-dynamical family).

Each simulator returns ``list[Session]``: recording i has its own generating parameters (in
``meta``), its own neuron count N_i ~ U{20..100} and random readout, and true ``latents``.

- ``simulate_limit_cycles``: r' = alpha r (1 - r^2), theta' = omega_i (|omega| varies, both signs).
- ``simulate_input_limit_cycles``: the same, with one input pulse per trial that kicks the latent.
- ``simulate_duffing``: z1' = z2, z2' = a z2 - z1 (b + c z1^2) + noise, (a, b) varying.
- ``simulate_hopf``: z1' = mu z1 - w z2 - z1 |z|^2, z2' = w z1 + mu z2 - z2 |z|^2, mu varying
  (a stable focus for mu < 0, a limit cycle of radius sqrt(mu) for mu > 0).

Latents are integrated by Euler-Maruyama with ``substeps`` steps per bin and observed through
y = C z + d + noise (Gaussian) or y ~ Poisson(softplus(C z + d)) (Poisson).
"""

from __future__ import annotations

import numpy as np

from ..session import Session, make_session


def _integrate(drift, z0, num_timesteps, dt, noise, rng, substeps=5, method="euler", kicks=None):
    """z0 (R, 2) -> (R, T, 2) sampled once per bin, ``substeps`` steps per bin; ``kicks``
    (R, T, 2) or None: displacements added to the state as it enters each bin.

    ``method="euler"``: Euler-Maruyama. ``"rk4"``: a classical Runge-Kutta step of the drift
    plus the same sqrt(h) noise increment. Explicit Euler adds energy to an undamped oscillation
    at a rate ~ h omega^2, which for the Duffing oscillator (omega^2 ~ 3 c z1^2) outgrows weak
    damping once the amplitude is large: trajectories then blow up (NaN at T = 300). RK4 keeps
    the oscillators' energy balance.
    """
    h = dt / substeps
    z = z0.copy()
    out = np.empty((z0.shape[0], num_timesteps, z0.shape[1]))
    for t in range(num_timesteps):
        if kicks is not None:
            z = z + kicks[:, t]
        out[:, t] = z
        for _ in range(substeps):
            if method == "rk4":
                k1 = drift(z)
                k2 = drift(z + 0.5 * h * k1)
                k3 = drift(z + 0.5 * h * k2)
                k4 = drift(z + h * k3)
                step = (k1 + 2 * k2 + 2 * k3 + k4) / 6
            else:
                step = drift(z)
            z = z + h * step + np.sqrt(h) * noise * rng.standard_normal(z.shape)
    return out


def drift_of(meta: dict):
    """The noise-free drift z (K, 2) -> dz/dt (K, 2) of a Duffing or Hopf recording's ``meta``."""
    if meta["system"] == "duffing":
        a, b, c = meta["a"], meta["b"], meta["c"]
        return lambda z: np.stack([z[:, 1], a * z[:, 1] - z[:, 0] * (b + c * z[:, 0] ** 2)], -1)
    if meta["system"] == "hopf":
        mu, omega = meta["mu"], meta["omega"]

        def hopf(z):
            r2 = (z**2).sum(-1, keepdims=True)
            return mu * z + omega * np.stack([-z[:, 1], z[:, 0]], -1) - r2 * z

        return hopf
    raise ValueError(f"no drift for system {meta.get('system')!r}")


def rollout_true(
    meta: dict,
    z0,
    steps: int,
    dt: float,
    substeps: int = 5,
    *,
    process_noise: float = 0.0,
    num_samples: int = 256,
    seed: int = 0,
):
    """Roll the generating dynamics forward from z0 (K, 2): -> (K, steps, 2), the latents
    1..steps bins after z0 (for the oracle ceiling of a forecast metric).

    With ``process_noise = 0`` (default) the noise-free RK4 path of the drift. With the
    simulation's ``process_noise``, the mean over ``num_samples`` noisy paths (the simulator's
    own integrator): a Monte Carlo estimate of E[z_{t+k} | z_t], the forecast that minimizes the
    expected squared error given the true state. For nonlinear dynamics it differs from the
    noise-free path (a diffusing phase pulls the mean inwards).
    """
    z0 = np.asarray(z0, np.float64)
    if process_noise == 0.0:
        rng = np.random.default_rng(0)  # unused: noise 0
        return _integrate(drift_of(meta), z0, steps + 1, dt, 0.0, rng, substeps, "rk4")[:, 1:]
    rng = np.random.default_rng(seed)
    starts = np.repeat(z0, num_samples, axis=0)
    paths = _integrate(drift_of(meta), starts, steps + 1, dt, process_noise, rng, substeps, "rk4")
    return paths[:, 1:].reshape(len(z0), num_samples, steps, -1).mean(1)


def _observe(z, rng, likelihood, neurons, obs_noise, name, meta, dt, inputs=None) -> Session:
    """Random readout of latents z (R, T, 2) with N ~ U{neurons} neurons."""
    N = int(rng.integers(neurons[0], neurons[1] + 1))
    C = rng.standard_normal((N, z.shape[-1]))
    if likelihood == "poisson":
        d = rng.uniform(-0.5, 1.0, N)
        y = rng.poisson(np.log1p(np.exp(z @ (0.8 * C.T) + d))).astype(np.float32)
    else:
        d = rng.standard_normal(N)
        y = z @ C.T + d + obs_noise * rng.standard_normal(z.shape[:2] + (N,))
    return make_session(
        y, latents=z, inputs=inputs, dt=dt, name=name, meta=meta, likelihood=likelihood
    )


def _check(likelihood, num_recordings, num_trials, num_timesteps):
    if likelihood not in ("gaussian", "poisson"):
        raise ValueError(f"unknown likelihood {likelihood!r}; choose gaussian or poisson")
    for key, v in dict(
        num_recordings=num_recordings, num_trials=num_trials, num_timesteps=num_timesteps
    ).items():
        if int(v) < 1:
            raise ValueError(f"{key} must be a positive integer, got {v}")
    if num_timesteps < 2:
        raise ValueError(f"num_timesteps must be at least 2, got {num_timesteps}")


def simulate_limit_cycles(
    *,
    seed=0,
    likelihood="gaussian",
    num_recordings=20,
    num_trials=64,
    num_timesteps=100,
    omega_range=(0.5, 1.5),
    alpha=1.0,
    dt=0.1,
    process_noise=0.05,
    obs_noise=0.5,
    neurons=(20, 100),
    num_neurons=None,
    pulse_amplitude=0.0,
    pulse_window=(0.2, 0.95),
    name="limit_cycle",
) -> list[Session]:
    """Limit cycles of radius 1 whose angular speed omega_i (rad per time unit) varies.

    |omega_i| is spread evenly over ``omega_range`` (shuffled), the sign drawn at random, so
    both directions of rotation occur. ``meta``: ``omega``, ``alpha``, ``system``.

    With ``pulse_amplitude`` a > 0 every trial also has one input pulse, ``inputs[j, p_j, 0] =
    a`` at a bin p_j drawn uniformly from the ``pulse_window`` fraction of the trial (0
    elsewhere), which kicks the latent by (a, 0) as it enters bin p_j (the input of bin t drives
    the step into bin t): the kick is known from the inputs but not from the observations
    before it. The sessions then carry ``inputs`` (trials, T, 1).
    """
    _check(likelihood, num_recordings, num_trials, num_timesteps)
    neurons = (num_neurons, num_neurons) if num_neurons else neurons
    rng = np.random.default_rng(seed)
    first = int(pulse_window[0] * num_timesteps)
    last = min(int(pulse_window[1] * num_timesteps), num_timesteps - 1)
    if pulse_amplitude and not (0 < first <= last):
        raise ValueError(
            f"num_timesteps={num_timesteps} is too short for a pulse in the window {pulse_window}"
        )
    speeds = rng.permutation(np.linspace(*omega_range, num_recordings))
    signs = rng.choice([-1.0, 1.0], num_recordings)
    sessions = []
    for i in range(num_recordings):
        omega = float(signs[i] * speeds[i])

        def drift(z, omega=omega):
            r2 = (z**2).sum(-1, keepdims=True)
            rot = np.stack([-z[:, 1], z[:, 0]], -1)
            return alpha * z * (1.0 - r2) + omega * rot

        angle = rng.uniform(0, 2 * np.pi, num_trials)
        radius = rng.uniform(0.3, 1.5, num_trials)
        z0 = np.stack([radius * np.cos(angle), radius * np.sin(angle)], -1)
        inputs = kicks = None
        if pulse_amplitude:
            pulse = rng.integers(first, last + 1, size=num_trials)
            hit = np.arange(num_timesteps)[None, :] == pulse[:, None]  # (R, T)
            inputs = (pulse_amplitude * hit)[..., None]
            kicks = np.concatenate([inputs, np.zeros_like(inputs)], -1)
        z = _integrate(drift, z0, num_timesteps, dt, process_noise, rng, kicks=kicks)
        meta = dict(system="limit-cycle", omega=omega, alpha=alpha)
        if pulse_amplitude:
            meta["pulse_amplitude"] = float(pulse_amplitude)
        rec_name = f"{name}_seed{seed}_{i:03d}"
        sessions.append(
            _observe(z, rng, likelihood, neurons, obs_noise, rec_name, meta, dt, inputs)
        )
    return sessions


def simulate_input_limit_cycles(
    *,
    seed=0,
    likelihood="gaussian",
    num_recordings=20,
    num_trials=64,
    num_timesteps=100,
    num_neurons=None,
    pulse_amplitude=1.5,
    name="input_limit_cycle",
    **options,
) -> list[Session]:
    """:func:`simulate_limit_cycles` driven by inputs: one pulse per trial that kicks the latent
    by (``pulse_amplitude``, 0) (``neurodyn simulate input-limit-cycle``); ``options`` as
    there."""
    return simulate_limit_cycles(
        seed=seed,
        likelihood=likelihood,
        num_recordings=num_recordings,
        num_trials=num_trials,
        num_timesteps=num_timesteps,
        num_neurons=num_neurons,
        pulse_amplitude=pulse_amplitude,
        name=name,
        **options,
    )


def simulate_duffing(
    *,
    seed=0,
    likelihood="gaussian",
    num_recordings=20,
    num_trials=64,
    num_timesteps=100,
    a_range=(-0.5, -0.05),
    b_range=(-1.0, 1.0),
    c=1.0,
    dt=0.1,
    process_noise=0.1,
    obs_noise=0.5,
    neurons=(20, 100),
    num_neurons=None,
    name="duffing",
) -> list[Session]:
    """Duffing oscillators z1' = z2, z2' = a z2 - z1 (b + c z1^2) with (a, b) drawn uniformly.

    b < 0 gives two wells (bistable), b > 0 one; a < 0 is damping. ``meta``: ``a``, ``b``, ``c``.
    """
    _check(likelihood, num_recordings, num_trials, num_timesteps)
    neurons = (num_neurons, num_neurons) if num_neurons else neurons
    rng = np.random.default_rng(seed)
    sessions = []
    for i in range(num_recordings):
        a, b = float(rng.uniform(*a_range)), float(rng.uniform(*b_range))

        meta = dict(system="duffing", a=a, b=b, c=c)
        z0 = rng.uniform(-2.0, 2.0, (num_trials, 2))
        z = _integrate(drift_of(meta), z0, num_timesteps, dt, process_noise, rng, method="rk4")
        sessions.append(
            _observe(z, rng, likelihood, neurons, obs_noise, f"{name}_seed{seed}_{i:03d}", meta, dt)
        )
    return sessions


def simulate_hopf(
    *,
    seed=0,
    likelihood="gaussian",
    num_recordings=11,
    num_trials=64,
    num_timesteps=100,
    mu_range=(-1.0, 1.0),
    omega=1.0,
    dt=0.1,
    process_noise=0.1,
    obs_noise=0.5,
    neurons=(20, 100),
    num_neurons=None,
    name="hopf",
) -> list[Session]:
    """Hopf normal form with mu_i spread evenly over ``mu_range``. ``meta``: ``mu``, ``omega``."""
    _check(likelihood, num_recordings, num_trials, num_timesteps)
    neurons = (num_neurons, num_neurons) if num_neurons else neurons
    rng = np.random.default_rng(seed)
    mus = np.linspace(*mu_range, num_recordings)
    sessions = []
    for i in range(num_recordings):
        mu = float(mus[i])

        meta = dict(system="hopf", mu=mu, omega=omega)
        z0 = rng.uniform(-1.5, 1.5, (num_trials, 2))
        z = _integrate(drift_of(meta), z0, num_timesteps, dt, process_noise, rng, method="rk4")
        sessions.append(
            _observe(z, rng, likelihood, neurons, obs_noise, f"{name}_seed{seed}_{i:03d}", meta, dt)
        )
    return sessions
