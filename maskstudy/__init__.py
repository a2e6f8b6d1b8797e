"""maskstudy: lottery-ticket and pruning-mask research in PyTorch."""

from importlib.metadata import version

from maskstudy.runs.discover import open_runs
from maskstudy.runs.openlth import open_openlth
from maskstudy.runs.pruned_models import from_pruned_model
from maskstudy.runs.run import branch
from maskstudy.runs.store import open_run
from maskstudy.runs.sweep import open_sweep

__version__ = version("maskstudy")  # the installed distribution's, from pyproject.toml

__all__ = [
    "open_run",
    "open_sweep",
    "open_runs",
    "branch",
    "open_openlth",
    "from_pruned_model",
    "__version__",
]
