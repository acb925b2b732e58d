"""Batch steps called by the Airflow DAGs and the CLI: backfill, validate, dataset, train, evaluate, gate."""
