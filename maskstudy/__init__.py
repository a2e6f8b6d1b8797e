"""maskstudy: lottery-ticket and pruning-mask research in PyTorch."""

__version__ = "0.1.0"

from maskstudy.runs.store import open_run
from maskstudy.runs.sweep import open_sweep

__all__ = ["open_run", "open_sweep", "__version__"]
