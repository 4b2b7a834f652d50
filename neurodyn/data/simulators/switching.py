"""Simulators for the switching family: Lorenz (two lobes), NASCAR (rSLDS paper), an SLDS
with stationary transitions and a two-regime system switched by an input pulse.

All return a :class:`~neurodyn.data.Session` with ``states`` (the true discrete state per bin)
and ``latents`` (the true continuous trajectory), observed through random neurons.
"""

from __future__ import annotations

import numpy as np

from ..session import Session, make_session

LORENZ_SIGMA, LORENZ_RHO, LORENZ_BETA = 10.0, 28.0, 8.0 / 3.0


def _lorenz_field(x: np.ndarray) -> np.ndarray:
    """dx/dt of the Lorenz system; x: (..., 3)."""
    a, b, c = x[..., 0], x[..., 1], x[..., 2]
    return np.stack(
        [LORENZ_SIGMA * (b - a), a * (LORENZ_RHO - c) - b, a * b - LORENZ_BETA * c], axis=-1
    )


def _rk4(field, x, dt):
    k1 = field(x)
    k2 = field(x + 0.5 * dt * k1)
    k3 = field(x + 0.5 * dt * k2)
    k4 = field(x + dt * k3)
    return x + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)


def lorenz_lobes(latents: np.ndarray) -> np.ndarray:
    """Lobe label per bin: which of the two non-trivial fixed points (+-sqrt(beta (rho - 1)),
    same, rho - 1) is nearer in the (x, y) plane, i.e. the sign of x + y. latents: (..., 3)
    in Lorenz coordinates (or any positive rescaling of them centred like them)."""
    return (latents[..., 0] + latents[..., 1] > 0).astype(np.int32)


def _observe(rng, latents, num_neurons, likelihood, noise_scale, rate_scale):
    """Random readout of (trials, T, D) latents into (trials, T, N) observations."""
    D = latents.shape[-1]
    C = rng.normal(size=(D, num_neurons)) / np.sqrt(D)
    d = rng.normal(size=num_neurons) * 0.2
    drive = latents @ C + d
    if likelihood == "gaussian":
        return drive + noise_scale * rng.normal(size=drive.shape)
    if likelihood == "poisson":
        rate = rate_scale * np.log1p(np.exp(drive + 0.5))
        return rng.poisson(rate).astype(np.float32)
    raise ValueError(f"unknown likelihood {likelihood!r}; choose gaussian or poisson")


def simulate_lorenz(
    *,
    seed: int = 0,
    likelihood: str = "gaussian",
    num_trials: int = 16,
    num_timesteps: int = 200,
    num_neurons: int = 10,
    dt: float = 0.05,
    noise_scale: float = 0.1,
    rate_scale: float = 2.0,
) -> Session:
    """Lorenz attractor trajectories switching between its two lobes (state = lobe).

    Each trial starts from a random point near the attractor (after a burn-in), is integrated
    with RK4 (10 sub-steps per bin of ``dt`` time units), scaled to unit spread (z centred),
    and read out through ``num_neurons`` random linear neurons with Gaussian noise or Poisson
    counts (softplus rate times ``rate_scale``).
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_trials, 3)) * 5 + np.array([0.0, 0.0, 25.0])
    substeps = 10
    for _ in range(500):  # burn-in onto the attractor
        x = _rk4(_lorenz_field, x, dt / substeps)
    path = np.empty((num_trials, num_timesteps, 3))
    for t in range(num_timesteps):
        for _ in range(substeps):
            x = _rk4(_lorenz_field, x, dt / substeps)
        path[:, t] = x
    states = lorenz_lobes(path)
    # Unit spread; x and y share one scale and only z is centred, so that the lobes stay on
    # either side of x + y = 0.
    centre = np.array([0.0, 0.0, path[..., 2].mean()])
    xy_scale = path[..., :2].std()
    latents = (path - centre) / np.array([xy_scale, xy_scale, path[..., 2].std()])
    y = _observe(rng, latents, num_neurons, likelihood, noise_scale, rate_scale)
    return make_session(
        y,
        states=states,
        latents=latents,
        dt=dt,
        name="lorenz",
        meta={"simulator": "lorenz", "seed": seed, "likelihood": likelihood, "dt": dt},
        likelihood=likelihood,
    )


def _nascar_state(z: np.ndarray) -> np.ndarray:
    """The NASCAR track's state from the position: 0 = right turn (x > 1), 1 = left turn
    (x < -1), 2 = top straight going left (y > 0), 3 = bottom straight going right."""
    x, y = z[..., 0], z[..., 1]
    return np.where(x > 1, 0, np.where(x < -1, 1, np.where(y > 0, 2, 3))).astype(np.int32)


def _rotation(theta: float) -> np.ndarray:
    return np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])


def simulate_nascar(
    *,
    seed: int = 0,
    likelihood: str = "gaussian",
    num_trials: int = 8,
    num_timesteps: int = 400,
    num_neurons: int = 10,
    process_noise: float = 1e-3,
    noise_scale: float = 0.2,
    rate_scale: float = 2.0,
) -> Session:
    """The rSLDS paper's NASCAR track (Linderman et al. 2017): a 2-D latent circulating an oval.

    Four linear regimes chosen by the position (a recurrent SLDS): rotations by a fixed angle
    about (+1, 0) and (-1, 0) on the two turns, constant velocity left on the top straight and
    right on the bottom one (each also pulling its lane back to y = +-1). Turn speed and
    straight speed are matched (a lap of 2 half-circles
    of radius 1 and 2 straights of length 2 at about 0.1 per bin).
    """
    rng = np.random.default_rng(seed)
    speed = 0.1
    R = _rotation(speed)  # arc length per bin on a radius-1 turn equals the straight speed
    centres = np.array([[1.0, 0.0], [-1.0, 0.0]])

    def step(z, s):
        out = np.empty_like(z)
        for k in (0, 1):
            on = s == k
            out[on] = (z[on] - centres[k]) @ R.T + centres[k]
        # Straights move at constant speed and pull the lane back to y = +-1 (affine maps), so
        # that noise does not make the track's radius wander.
        for k, (vx, lane) in {2: (-speed, 1.0), 3: (speed, -1.0)}.items():
            on = s == k
            out[on, 0] = z[on, 0] + vx
            out[on, 1] = z[on, 1] + 0.2 * (lane - z[on, 1])
        return out

    z = np.stack([rng.uniform(-1, 1, num_trials), rng.choice([-1.0, 1.0], num_trials)], axis=1)
    latents = np.empty((num_trials, num_timesteps, 2))
    states = np.empty((num_trials, num_timesteps), np.int32)
    for t in range(num_timesteps):
        s = _nascar_state(z)
        latents[:, t], states[:, t] = z, s
        z = step(z, s) + np.sqrt(process_noise) * rng.normal(size=z.shape)
    y = _observe(rng, latents, num_neurons, likelihood, noise_scale, rate_scale)
    return make_session(
        y,
        states=states,
        latents=latents,
        name="nascar",
        meta={"simulator": "nascar", "seed": seed, "likelihood": likelihood},
        likelihood=likelihood,
    )


def simulate_slds(
    *,
    seed: int = 0,
    likelihood: str = "gaussian",
    num_trials: int = 16,
    num_timesteps: int = 200,
    num_neurons: int = 10,
    num_states: int = 3,
    stay: float = 0.95,
    process_noise: float = 0.05,
    noise_scale: float = 0.2,
    rate_scale: float = 2.0,
) -> Session:
    """A switching linear dynamical system with stationary (Markov) transitions, the generative
    story of ``slds``: the state does not depend on the latent, unlike NASCAR's (``rslds``).

    s_1 is uniform and s_t | s_{t-1} stays with probability ``stay``, else moves to one of the
    other states uniformly; h_1 ~ N(0, I_2) and h_t = c_k + A_k (h_{t-1} - c_k) + eps_t with
    eps_t ~ N(0, ``process_noise``^2 I) in state k: a damped rotation A_k = 0.97 R(theta_k)
    about a centre c_k (centres on a circle of radius 1.5, angles theta_k alternating in
    sign, 0.2-0.35 rad per bin). Observed through ``num_neurons`` random linear neurons as in
    :func:`simulate_lorenz`.
    """
    if num_states < 2:
        raise ValueError(f"num_states must be at least 2, got {num_states}")
    rng = np.random.default_rng(seed)
    K = num_states
    angles = 2 * np.pi * np.arange(K) / K
    centres = 1.5 * np.stack([np.cos(angles), np.sin(angles)], axis=1)  # [K, 2]
    thetas = np.where(np.arange(K) % 2 == 0, 1.0, -1.0) * np.linspace(0.2, 0.35, K)
    A = np.stack([0.97 * _rotation(t) for t in thetas])  # [K, 2, 2]
    P = np.full((K, K), (1 - stay) / (K - 1))
    np.fill_diagonal(P, stay)
    states = np.empty((num_trials, num_timesteps), np.int32)
    latents = np.empty((num_trials, num_timesteps, 2))
    s = rng.integers(K, size=num_trials)
    z = rng.normal(size=(num_trials, 2))
    for t in range(num_timesteps):
        if t > 0:
            s = (rng.uniform(size=(num_trials, 1)) > np.cumsum(P[s], axis=1)).sum(1)
            c = centres[s]
            z = c + np.einsum("bij,bj->bi", A[s], z - c) + process_noise * rng.normal(size=z.shape)
        states[:, t], latents[:, t] = s, z
    y = _observe(rng, latents, num_neurons, likelihood, noise_scale, rate_scale)
    return make_session(
        y,
        states=states,
        latents=latents,
        name="slds",
        meta={"simulator": "slds", "seed": seed, "likelihood": likelihood, "stay": stay},
        likelihood=likelihood,
    )


def simulate_input_switching(
    *,
    seed: int = 0,
    likelihood: str = "gaussian",
    num_trials: int = 16,
    num_timesteps: int = 100,
    num_neurons: int = 20,
    pulse_window: tuple[float, float] = (0.2, 0.8),
    pulse_amplitude: float = 1.0,
    process_noise: float = 0.05,
    noise_scale: float = 0.2,
    rate_scale: float = 2.0,
) -> Session:
    """Two linear regimes and an external input that switches between them.

    Each trial has one scalar pulse, ``inputs[i, p_i, 0] = pulse_amplitude``, at a bin p_i drawn
    uniformly from the ``pulse_window`` fraction of the trial; elsewhere the input is 0. The
    state is 0 before the pulse bin and 1 from it on (s_t = 1 iff a pulse came at some
    t' <= t: the input of bin t drives the transition into bin t, the switching models'
    convention p(s_t | s_{t-1}, h_{t-1}, u_t)), so the switch time is known from the input but
    not from the observations before it. In state k, h_t = c_k + A_k (h_{t-1} - c_k) + eps_t with
    eps_t ~ N(0, ``process_noise``^2 I): state 0 a slow counter-clockwise damped rotation about
    (-1, 0), state 1 a faster clockwise one about (+1, 0); h_1 ~ N(c_0, 0.25 I). Observed
    through ``num_neurons`` random linear neurons as in :func:`simulate_lorenz`.

    Returns a session with ``inputs`` (trials, T, 1), ``states`` and ``latents`` (trials, T, 2).
    """
    lo, hi = pulse_window
    if not 0 <= lo <= hi < 1:
        raise ValueError(f"pulse_window must satisfy 0 <= lo <= hi < 1, got {pulse_window}")
    first, last = int(lo * num_timesteps), min(int(hi * num_timesteps), num_timesteps - 2)
    if num_timesteps < 3 or last < first:
        raise ValueError(
            f"num_timesteps={num_timesteps} is too short for a pulse in the window {pulse_window}"
        )
    rng = np.random.default_rng(seed)
    centres = np.array([[-1.0, 0.0], [1.0, 0.0]])
    A = np.stack([0.98 * _rotation(0.15), 0.95 * _rotation(-0.3)])
    pulse = rng.integers(first, last + 1, size=num_trials)
    t = np.arange(num_timesteps)
    inputs = np.where(t[None, :] == pulse[:, None], pulse_amplitude, 0.0)[..., None]
    states = (t[None, :] >= pulse[:, None]).astype(np.int32)
    latents = np.empty((num_trials, num_timesteps, 2))
    z = centres[0] + 0.5 * rng.normal(size=(num_trials, 2))
    for step in range(num_timesteps):
        s = states[:, step]
        if step > 0:
            c = centres[s]
            z = c + np.einsum("bij,bj->bi", A[s], z - c) + process_noise * rng.normal(size=z.shape)
        latents[:, step] = z
    y = _observe(rng, latents, num_neurons, likelihood, noise_scale, rate_scale)
    return make_session(
        y,
        states=states,
        latents=latents,
        inputs=inputs,
        name="input_switching",
        meta={
            "simulator": "input-switching",
            "seed": seed,
            "likelihood": likelihood,
            "pulse_bins": pulse.tolist(),
        },
        likelihood=likelihood,
    )
