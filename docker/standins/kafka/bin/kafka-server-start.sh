#!/usr/bin/env bash
# kafka-server-start.sh CONFIG: the broker (default heap 1 GB, as Kafka's own script), logging to stdout
export KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G}"
export KAFKA_LOG4J_CONFIG=/opt/kafka/config/log4j2.properties
exec "$(dirname "$0")/kafka-run-class.sh" kafka.Kafka "$@"
