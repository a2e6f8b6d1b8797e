"""maskstudy: lottery-ticket and pruning-mask research in PyTorch.

The public API below loads on first use (PEP 562), so ``import maskstudy`` and the command
line's ``--help`` do not load torch until something needs it.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import TYPE_CHECKING

from maskstudy.lazy import lazy_attributes

if TYPE_CHECKING:  # what each name is, for readers and type checkers
    from maskstudy.explorer import explore
    from maskstudy.runs.discover import open_runs
    from maskstudy.runs.openlth import open_openlth
    from maskstudy.runs.pruned_models import from_pruned_model
    from maskstudy.runs.run import branch
    from maskstudy.runs.store import open_run
    from maskstudy.runs.sweep import open_sweep

__version__ = version("maskstudy")  # the installed distribution's, from pyproject.toml

_API = {
    "open_run": "maskstudy.runs.store",
    "open_sweep": "maskstudy.runs.sweep",
    "open_runs": "maskstudy.runs.discover",
    "branch": "maskstudy.runs.run",
    "open_openlth": "maskstudy.runs.openlth",
    "from_pruned_model": "maskstudy.runs.pruned_models",
    "explore": "maskstudy.explorer",
}
__all__ = [
    "open_run",
    "open_sweep",
    "open_runs",
    "branch",
    "open_openlth",
    "from_pruned_model",
    "explore",
    "__version__",
]


__getattr__ = lazy_attributes(__name__, _API, globals())
