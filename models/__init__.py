"""Klinestream's domain: kline contract, features, environment, Q-networks, agents, policy, settings, and
the records and ports of the live trader.

This package imports no I/O library (no mlflow, cassandra, kafka, pyspark, airflow, aiohttp, requests,
binance or great_expectations) and none of the other Klinestream packages (docs/architecture.md).
"""
