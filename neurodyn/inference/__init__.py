"""Inference: the discrete-state core (``hmm``), the SVI engine (``svi.fit``), predictions,
metrics, importance sampling, ArviZ export, diagnostics, model comparison and the run folder.

Submodules are imported on use (``from neurodyn.inference import hmm``) so that importing the
package stays cheap; ``fit`` is re-exported here.
"""

from .svi import FitResult, fit

__all__ = ["FitResult", "fit"]
