"""The Run API: what the command line does, for Python.

```python
import neurodyn
run = neurodyn.fit("srnn", ["train.npz"], states=2, latent_dim=3, out="run")
run = neurodyn.load("run")
run.evaluate("test.npz")          # the keys of `neurodyn evaluate --json`
post = run.infer("test.npz")      # xarray.DataTree: the posterior of new recordings
run.report("test.npz", out="figures")
neurodyn.compare([run, other], "test.npz")
```

Folders written from Python and from the command line are the same run folders.
"""

from .compare import compare
from .files import convert, simulate
from .fitting import fit
from .grid import sweep
from .run import Run, load
from .sessions import as_sessions

__all__ = ["Run", "as_sessions", "compare", "convert", "fit", "load", "simulate", "sweep"]
