# A private Docker engine for `make compose-test` (sourced by .ci/compose-test).
#
# The engine comes from Debian's packages (`docker.io`) and keeps all of its state under var/docker/ of
# the checkout: images and volumes (data-root), its runtime state, pidfile, log and socket. The client is
# pointed at that socket with DOCKER_HOST, so a system engine (if any) is never used or touched. What a
# running dockerd changes outside var/docker (the docker0 bridge, iptables chains, net.ipv4.ip_forward)
# is recorded before it starts and put back after it stops. When DOCKER_HOST is already set, that engine
# is used as it is: nothing is started or stopped.

ENGINE_DIR="${ENGINE_DIR:-$PWD/var/docker}"
ENGINE_STARTED=0
ENGINE_PID=""

engine_log() { printf '[engine] %s\n' "$*" >&2; }

# Install what the test needs from Debian's packages when it is missing: dockerd, debootstrap, iptables.
# The package's own service is not started by the install (a temporary policy-rc.d says no): the engine
# of this test is the one engine_start starts and engine_stop stops.
engine_install() {
  local policy=/usr/sbin/policy-rc.d added=0
  if [ "$(id -u)" -eq 0 ] && [ ! -e "$policy" ] && ! command -v dockerd >/dev/null 2>&1; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added=1
  fi
  local status=0
  .ci/apt-install.sh dockerd:docker.io docker:docker.io debootstrap:debootstrap iptables-save:iptables || status=$?
  [ "$added" -eq 1 ] && rm -f "$policy"
  return "$status"
}

# Socket and runtime state must fit a unix socket path (108 bytes): deep checkouts use /run instead.
_engine_run_dir() {
  local dir="$ENGINE_DIR/run"
  if [ "${#dir}" -gt 60 ]; then
    dir="/run/klinestream-docker.$(printf '%s' "$ENGINE_DIR" | md5sum | cut -c1-8)"
  fi
  printf '%s' "$dir"
}

engine_start() {
  if [ -n "${DOCKER_HOST:-}" ]; then
    engine_log "DOCKER_HOST=$DOCKER_HOST is set: using that engine (none started, none stopped)"
    docker info >/dev/null || { echo "error: the engine at DOCKER_HOST=$DOCKER_HOST does not answer" >&2; return 1; }
    return 0
  fi
  if [ -S /var/run/docker.sock ] && docker -H unix:///var/run/docker.sock version >/dev/null 2>&1; then
    export DOCKER_HOST=unix:///var/run/docker.sock
    engine_log "this machine's Docker engine is running: using it (none started, none stopped)"
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || { echo "error: dockerd runs as root: run make compose-test as root" >&2; return 1; }
  local run_dir
  run_dir=$(_engine_run_dir)
  mkdir -p "$ENGINE_DIR/data" "$run_dir"
  export DOCKER_HOST="unix://$run_dir/docker.sock"
  if [ -f "$ENGINE_DIR/dockerd.pid" ] && kill -0 "$(cat "$ENGINE_DIR/dockerd.pid")" 2>/dev/null; then
    echo "error: a dockerd of an earlier run is still alive (pid $(cat "$ENGINE_DIR/dockerd.pid")):" \
      "stop it (kill that pid) and run again" >&2
    return 1
  fi
  # what dockerd changes on the host, to put back afterwards. A run whose engine was killed (the machine
  # stopped it) left its bridges and rules behind: the state recorded before that run is the one to restore.
  if [ -f "$ENGINE_DIR/started" ]; then
    engine_log "an earlier run's engine was killed before it stopped: the host state recorded before that run is kept, to put back at the end"
  else
    iptables-save -t filter >"$ENGINE_DIR/iptables.filter.before"
    iptables-save -t nat >"$ENGINE_DIR/iptables.nat.before"
    cat /proc/sys/net/ipv4/ip_forward >"$ENGINE_DIR/ip_forward.before"
    ip link show docker0 >/dev/null 2>&1 && echo 1 >"$ENGINE_DIR/docker0.before" || echo 0 >"$ENGINE_DIR/docker0.before"
  fi
  touch "$ENGINE_DIR/started"
  ENGINE_STARTED=1
  dockerd --data-root "$ENGINE_DIR/data" --exec-root "$run_dir/exec" --pidfile "$ENGINE_DIR/dockerd.pid" \
    --host "$DOCKER_HOST" --log-level warn >"$ENGINE_DIR/dockerd.log" 2>&1 &
  ENGINE_PID=$!
  local waited=0
  until docker version >/dev/null 2>&1; do
    if ! kill -0 "$ENGINE_PID" 2>/dev/null; then
      echo "error: dockerd exited at start; the end of $ENGINE_DIR/dockerd.log:" >&2
      tail -n 20 "$ENGINE_DIR/dockerd.log" >&2
      return 1
    fi
    [ "$waited" -lt 60 ] || { echo "error: dockerd did not answer within 60 s" >&2; return 1; }
    sleep 1
    waited=$((waited + 1))
  done
  engine_log "dockerd pid $ENGINE_PID, $(docker version --format 'engine {{.Server.Version}}'), socket $DOCKER_HOST"
}

# Stop the engine this run started (and only it), then put the host back as it was.
engine_stop() {
  [ "$ENGINE_STARTED" -eq 1 ] || return 0
  ENGINE_STARTED=0
  if kill -0 "$ENGINE_PID" 2>/dev/null; then
    kill -TERM "$ENGINE_PID"
    local waited=0
    while kill -0 "$ENGINE_PID" 2>/dev/null && [ "$waited" -lt 60 ]; do
      sleep 1
      waited=$((waited + 1))
    done
    kill -0 "$ENGINE_PID" 2>/dev/null && { engine_log "dockerd did not stop in 60 s: killed"; kill -KILL "$ENGINE_PID"; }
    wait "$ENGINE_PID" 2>/dev/null || true
  fi
  if [ "$(cat "$ENGINE_DIR/docker0.before" 2>/dev/null)" = 0 ] && ip link show docker0 >/dev/null 2>&1; then
    ip link delete docker0
  fi
  [ -f "$ENGINE_DIR/iptables.filter.before" ] && iptables-restore -T filter <"$ENGINE_DIR/iptables.filter.before"
  [ -f "$ENGINE_DIR/iptables.nat.before" ] && iptables-restore -T nat <"$ENGINE_DIR/iptables.nat.before"
  [ -f "$ENGINE_DIR/ip_forward.before" ] && cat "$ENGINE_DIR/ip_forward.before" >/proc/sys/net/ipv4/ip_forward
  # the data-root mount a killed engine leaves (a clean stop removes it)
  ! mountpoint -q "$ENGINE_DIR/data" || umount "$ENGINE_DIR/data" || true
  rm -rf "$(_engine_run_dir)"
  rm -f "$ENGINE_DIR/started"
  engine_log "dockerd pid $ENGINE_PID stopped; bridge, iptables and ip_forward put back"
}

# Print what an engine run left on the host; exit status 1 when anything is left.
engine_leftovers() {
  local left=0 run_dir
  run_dir=$(_engine_run_dir)
  if pgrep -f "$ENGINE_DIR/|$run_dir|containerd-shim-runc-v2 -namespace moby" >/dev/null; then
    echo "left: engine processes:" >&2
    pgrep -af "$ENGINE_DIR/|$run_dir|containerd-shim-runc-v2 -namespace moby" >&2
    left=1
  fi
  if grep -F " $ENGINE_DIR/" /proc/mounts >&2; then
    echo "left: mounts under $ENGINE_DIR (above)" >&2
    left=1
  fi
  if ip -o link show | grep -E ' (veth[0-9a-f]+|br-[0-9a-f]{12})[@:]' >&2; then
    echo "left: container network interfaces (above)" >&2
    left=1
  fi
  if [ "$(cat "$ENGINE_DIR/docker0.before" 2>/dev/null)" = 0 ] && ip link show docker0 >/dev/null 2>&1; then
    echo "left: the docker0 bridge" >&2
    left=1
  fi
  local table
  for table in filter nat; do
    if [ -f "$ENGINE_DIR/iptables.$table.before" ] \
      && ! diff <(_iptables_rules "$table") <(_iptables_rules "$table" "$ENGINE_DIR/iptables.$table.before") >&2; then
      echo "left: iptables $table rules differ from before the run (above)" >&2
      left=1
    fi
  done
  return "$left"
}

# The rules of an iptables table (or of a file saved by iptables-save) without comments and counters.
_iptables_rules() {
  if [ $# -gt 1 ]; then cat "$2"; else iptables-save -t "$1"; fi | grep -v '^#' | sed -E 's/ \[[0-9]+:[0-9]+\]$//'
}
