#!/usr/bin/env bash
# Makes `docker compose` available for `docker compose config` (no Docker engine is needed for that).
# The machines here have the docker client but not its compose plugin, and only the package
# registries are reachable: build the plugin from its Go module (cached after the first build).
set -euo pipefail
VERSION="${COMPOSE_VERSION:-v2.40.3}"
PLUGIN_DIR="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"

if docker compose version >/dev/null 2>&1; then
  exit 0
fi
command -v go >/dev/null || { echo "error: neither 'docker compose' nor Go is installed" >&2; exit 1; }
echo "building docker compose $VERSION from its Go module (first time only)"
src=$(go mod download -json "github.com/docker/compose/v2@$VERSION" \
      | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$src/." "$work"
chmod -R u+w "$work"
mkdir -p "$PLUGIN_DIR"
(cd "$work" && go build -trimpath -ldflags "-X github.com/docker/compose/v2/internal.Version=$VERSION" -o "$PLUGIN_DIR/docker-compose" ./cmd)
docker compose version
