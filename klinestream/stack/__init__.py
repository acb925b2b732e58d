"""The local real-service stack: Kafka, Cassandra, MLflow and Airflow as processes on this machine.

``jvm`` resolves the Java services' jars from Maven Central, ``services`` describes each service,
``process`` handles pid files and process groups, and ``control`` brings them up and down.
"""
