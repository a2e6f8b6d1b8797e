"""Mask analysis: overlap with chance baselines, conv structure, weight stability, embeddings.

Import the modules: ``from maskstudy.analysis import overlap, structure, structure_tests,
structure_study, stability``.
Non-nested (Drop Pruning) trajectories: ``revival_table``, ``flip_table``, ``flip_counts``.
"""

from maskstudy.analysis.revivals import flip_counts, flip_table, revival_table

__all__ = ["flip_counts", "flip_table", "revival_table"]
