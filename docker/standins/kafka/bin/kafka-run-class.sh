#!/usr/bin/env bash
# Kafka's bin/kafka-run-class.sh, reduced to what the stand-in needs: run a class on the jars of
# /opt/kafka/libs with KAFKA_HEAP_OPTS (default -Xmx256M), KAFKA_JVM_PERFORMANCE_OPTS and KAFKA_OPTS.
set -euo pipefail
# shellcheck disable=SC2086  # the *_OPTS variables hold several JVM flags
exec java ${KAFKA_HEAP_OPTS:--Xmx256M} ${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseG1GC -Djava.awt.headless=true} \
  ${KAFKA_OPTS:-} -Dlog4j2.configurationFile="${KAFKA_LOG4J_CONFIG:-/opt/kafka/config/tools-log4j2.properties}" \
  -cp '/opt/kafka/libs/*' "$@"
