"""The ``klinestream`` command line and the local service stack."""

__version__ = "0.1.0"
