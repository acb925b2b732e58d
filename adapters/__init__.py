"""Adapters: everything that talks to the outside world (Binance, MLflow, Kafka, Cassandra, files); imports only models."""
