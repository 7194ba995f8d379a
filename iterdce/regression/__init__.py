"""The voxel-wise kinetic regression: the model (``model``) and its per-fold fit on preprocessed cases (``fit``).

It sits below training (the kinetic prior) and evaluation (a baseline), which both use it.
"""
