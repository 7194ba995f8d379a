"""The synthesis losses: every loss term, its default weight and the weighted sum the trainer minimizes.

Below preprocessing (the planner writes the default weights into each plan and the plan schema checks the
names) and training (which minimizes the loss); above the network package (the perceptual term's Med3D features).
"""
