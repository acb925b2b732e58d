"""The live path: ingestor, Spark job, online trader and brokers; Kafka and Cassandra through ``adapters``."""
