#!/usr/bin/env bash
# The official Airflow image's entrypoint, as far as docker-compose.yml uses it: `bash ...`, `python ...`
# and `airflow ...` run as given; anything else is an airflow sub-command (`api-server` = `airflow api-server`).
set -euo pipefail
case "${1:-}" in
  bash | python | python3 | airflow | pip) exec "$@" ;;
  "") exec airflow version ;;
  *) exec airflow "$@" ;;
esac
