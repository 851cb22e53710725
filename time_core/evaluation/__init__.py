"""Measuring edits: the paper's metrics, image classifiers, CLIP scoring, the λ search, result folders, and the
evaluation (`benchmark`) and debiasing (`debiasing`) commands with their reports (`report`, `cli`).

Modules are imported where they are used; this package imports nothing at load time.
"""
