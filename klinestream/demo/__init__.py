"""``klinestream demo``: the whole platform in one command (see :mod:`klinestream.demo.runner`)."""

from klinestream.demo.runner import DemoConfig, run_demo

__all__ = ["DemoConfig", "run_demo"]
