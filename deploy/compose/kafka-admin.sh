#!/bin/sh
# The broker's admin tasks in the compose stack, as its `admin` user:
#   check  the broker answers an authenticated client (healthcheck);
#   acls   each role gets only what it needs on the Driftwatch topics.
set -eu
props=/tmp/driftwatch-admin.properties
cat >"$props" <<PROPS
security.protocol=SASL_PLAINTEXT
sasl.mechanism=PLAIN
sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="${DRIFTWATCH_KAFKA_ADMIN_PASSWORD}";
PROPS
bin=/opt/kafka/bin
server=${KAFKA_BOOTSTRAP:-kafka:9092}
acl() { "$bin/kafka-acls.sh" --bootstrap-server "$server" --command-config "$props" --add --force "$@" >/dev/null; }

case "${1:-}" in
  check)
    "$bin/kafka-broker-api-versions.sh" --bootstrap-server localhost:9092 --command-config "$props" >/dev/null 2>&1
    ;;
  acls)
    # Agents: produce to the three streams (idempotently), nothing else.
    for t in driftwatch.snapshots driftwatch.audit driftwatch.sla; do
      acl --allow-principal User:driftwatch_agent --operation Write --operation Describe --topic "$t"
    done
    acl --allow-principal User:driftwatch_agent --operation IdempotentWrite --cluster
    # Collectors: consume the streams in their group, write dead letters.
    for t in driftwatch.snapshots driftwatch.audit driftwatch.sla; do
      acl --allow-principal User:driftwatch_collector --operation Read --operation Describe --topic "$t"
    done
    acl --allow-principal User:driftwatch_collector --operation Write --operation Describe --topic driftwatch.dead-letter
    acl --allow-principal User:driftwatch_collector --operation Read --operation Describe --group driftwatch-collector
    acl --allow-principal User:driftwatch_collector --operation IdempotentWrite --cluster
    echo "ACLs in place: driftwatch_agent writes the streams; driftwatch_collector reads them and writes dead letters"
    ;;
  *)
    echo "usage: kafka-admin.sh check|acls" >&2
    exit 2
    ;;
esac
