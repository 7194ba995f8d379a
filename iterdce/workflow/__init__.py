"""Orchestration above training, inference and evaluation: the fold's cross-validation run and the demo."""
