"""The benchmarks of iterdce: scripts run as ``python -m benchmarks.<name>`` from the repository root, and the
helpers they share (benchmarks/common.py). Not part of the installed package."""
