"""Mask analysis: overlap with chance baselines, conv structure, weight stability, embeddings.

Import the modules: ``from maskstudy.analysis import overlap, structure, structure_tests,
structure_study, stability``.
Non-nested (Drop Pruning) trajectories: ``revival_table``, ``flip_table``, ``flip_counts``.

The names below load on first use (PEP 562), so importing one analysis module (``lmc``, say)
does not load scipy through the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from maskstudy.lazy import lazy_attributes

if TYPE_CHECKING:
    from maskstudy.analysis.revivals import flip_counts, flip_table, revival_table

_API = {
    "flip_counts": "maskstudy.analysis.revivals",
    "flip_table": "maskstudy.analysis.revivals",
    "revival_table": "maskstudy.analysis.revivals",
}
__all__ = ["flip_counts", "flip_table", "revival_table"]


__getattr__ = lazy_attributes(__name__, _API, globals())
