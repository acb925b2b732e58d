"""The live path: ingestor, Spark job, online trader, brokers and the Cassandra sink."""
