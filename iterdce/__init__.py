"""iterdce: self-configuring iterative synthesis of delayed-phase breast DCE-MRI."""

__version__ = "0.1.0"
