"""Physics-based synthetic breast DCE-MRI phantom (documentation/simulation.md)."""
from iterdce.simulation.simulate import simulate_dataset

__all__ = ["simulate_dataset"]
