"""A shim for tools that predate PEP 517/660 (``python setup.py develop``, old pip): everything is configured in
pyproject.toml."""
from setuptools import setup

setup()
