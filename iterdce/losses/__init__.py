"""The synthesis losses: the loss-term registry, the built-in terms and the weighted sum the trainer minimizes.

Below preprocessing (the planner writes the default weights into each plan and the plan schema checks the
names) and training (which minimizes the loss); above the network package (the perceptual term's Med3D features).
Importing any module of the package registers the built-in terms (terms.py) first.
"""
from iterdce.losses import terms as _terms  # noqa: F401  (registers the built-in terms, in their order)
