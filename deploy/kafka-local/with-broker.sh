#!/usr/bin/env bash
# Run a command with a real local Apache Kafka broker: start it (jars cached outside the work tree), export
# KAFKA_BOOTSTRAP_SERVERS, run the command, and stop the broker however the command ends.
# An already set KAFKA_BOOTSTRAP_SERVERS (an existing cluster, docker compose) is used as is.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  exec "$@"
fi
state=".run/test-broker.json"
cli=".venv/bin/kafka-scheduler"
stop() { "$cli" dev broker stop --state "$state" >/dev/null 2>&1 || true; }
trap stop EXIT INT TERM
started=$(date +%s.%N)
KAFKA_BOOTSTRAP_SERVERS=$("$cli" dev broker start --state "$state")
export KAFKA_BOOTSTRAP_SERVERS
printf 'local Kafka broker at %s (ready in %.1f s)\n' "$KAFKA_BOOTSTRAP_SERVERS" "$(echo "$(date +%s.%N) - $started" | bc)"
"$@"
