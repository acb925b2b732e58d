#!/usr/bin/env bash
# The official cassandra image's start-up, as far as docker-compose.yml uses it: cassandra.yaml from the
# CASSANDRA_* variables (cluster name; listen, broadcast and seed address = the container's address; CQL on
# 0.0.0.0:9042), heap from MAX_HEAP_SIZE (HEAP_NEWSIZE only matters with CMS, as in Cassandra's own
# cassandra-env.sh; Java 17 runs G1), data under /var/lib/cassandra, logs to stdout.
set -euo pipefail
if [ "${1:-}" != cassandra ]; then
  exec "$@"
fi
address="${CASSANDRA_LISTEN_ADDRESS:-$(hostname -i | awk '{print $1}')}"
cat >/etc/cassandra/cassandra.yaml <<YAML
cluster_name: '${CASSANDRA_CLUSTER_NAME:-Test Cluster}'
num_tokens: ${CASSANDRA_NUM_TOKENS:-16}
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: ${CASSANDRA_ENDPOINT_SNITCH:-SimpleSnitch}
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "${CASSANDRA_SEEDS:-$address}"
listen_address: $address
broadcast_address: ${CASSANDRA_BROADCAST_ADDRESS:-$address}
rpc_address: ${CASSANDRA_RPC_ADDRESS:-0.0.0.0}
broadcast_rpc_address: ${CASSANDRA_BROADCAST_ADDRESS:-$address}
native_transport_port: 9042
storage_port: 7000
start_native_transport: true
commitlog_sync: periodic
commitlog_sync_period: 10000ms
crypto_provider:
  - class_name: org.apache.cassandra.security.JREProvider
    parameters:
      - fail_on_missing_provider: "false"
YAML
heap="${MAX_HEAP_SIZE:-1G}"
mapfile -t options < <(grep -v '^#' /etc/cassandra/jvm17-server.options)
jamm=$(ls /opt/cassandra/lib/jamm-*.jar)
mkdir -p /var/log/cassandra
exec java "-Xms$heap" "-Xmx$heap" -Xss512k -XX:+UseG1GC -XX:MaxGCPauseMillis=300 \
  "-javaagent:$jamm" "${options[@]}" \
  -Dcassandra.config=file:///etc/cassandra/cassandra.yaml -Dcassandra.storagedir=/var/lib/cassandra \
  -Dcassandra.logdir=/var/log/cassandra -Dlogback.configurationFile=/etc/cassandra/logback.xml \
  -Dcassandra-foreground=yes -Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.ring_delay_ms=1000 \
  -cp "/etc/cassandra:/opt/cassandra/lib/*" org.apache.cassandra.service.CassandraDaemon
