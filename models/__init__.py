"""Klinestream's core: kline contract, features, environment, Q-networks, agents and settings.

This package imports no infrastructure (no airflow, pyspark, kafka, cassandra or great_expectations)
and none of the other Klinestream packages.
"""
