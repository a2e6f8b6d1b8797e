"""Mask analysis: overlap with chance baselines, conv structure, weight stability, embeddings.

Import the modules: ``from maskstudy.analysis import overlap, structure, stability``.
"""
