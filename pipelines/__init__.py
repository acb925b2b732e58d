"""Batch steps called by the Airflow DAGs and the CLI: fetch, lake, validate, dataset, train, evaluate, register."""
