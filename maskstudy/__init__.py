"""maskstudy: lottery-ticket and pruning-mask research in PyTorch."""

__version__ = "0.1.0"

from maskstudy.runs.store import open_run

__all__ = ["open_run", "__version__"]
