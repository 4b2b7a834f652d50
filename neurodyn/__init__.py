"""neurodyn: NumPyro models of latent neural population dynamics."""

__version__ = "0.1.0"
