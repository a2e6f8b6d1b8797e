"""maskstudy: lottery-ticket and pruning-mask research in PyTorch."""

__version__ = "0.1.0"
