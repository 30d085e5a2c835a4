#!/usr/bin/env bash
# The local platform stack: real Postgres, Redis, N platform-backend instances, nginx and
# Prometheus as processes on loopback, for machines without Docker (and for CI).
#
#   stack.sh up [--backends N] [--state-dir DIR] [--rate-limit] [--watch-pid PID]
#   stack.sh down [--state-dir DIR]
#   stack.sh status [--state-dir DIR]
#   stack.sh restart-backend NAME [--state-dir DIR]   (stops NAME, starts it again)
#   stack.sh start-backend NAME [--state-dir DIR]     (starts NAME only if it is down)
#
# Every process listens on 127.0.0.1 on a port picked free at start. When everything
# answers its readiness check, `up` writes DIR/state.json (ports, PIDs, URLs) for loadgen.
# nginx listens three times: TLS with HTTP/2 ("base_url", certificate signed by a CA made
# for this start, "ca_file"), h2c by prior knowledge ("h2c_url") and HTTP/1.1 ("http_url").
# `down` stops everything (SIGTERM, then SIGKILL after a bounded wait) and removes DIR.
#
# Postgres is reached through a loadgen fault proxy (`loadgen proxy`), listed in state.json
# under "proxies" as "postgres": a scenario's `{ proxy = "postgres" }` faults slow or break
# the backends' database link. "postgres.url" in state.json is the direct address.
#
# Environment: PLATFORM_BACKEND_BIN and LOADGEN_BIN (use these binaries instead of building
# release ones), CARGO_TARGET_DIR, SEGMENT_BYTES and DB_POOL_SIZE (passed to the backends),
# STACK_READY_TIMEOUT (seconds to wait for each component, default 60).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SCRIPT="$SCRIPT_DIR/$(basename "${BASH_SOURCE[0]}")"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"

STATE_DIR="$REPO_ROOT/.stack"
BACKENDS=3
RATE_LIMIT=off
WATCH_PID=""
READY_TIMEOUT="${STACK_READY_TIMEOUT:-60}"
# Ports handed out during this invocation, so two components never get the same one.
PORTS_TAKEN=" "

log() { printf 'stack: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  sed -n '2,19p' "$SCRIPT" | sed 's/^# \{0,1\}//'
  exit 2
}

# ---------------------------------------------------------------------------------------
# small helpers

# True if PID is a live process (a zombie counts as dead: where PID 1 does not reap,
# a killed process lingers as a zombie and must not make `down` wait for nothing).
is_alive() {
  local pid="$1" state
  [[ -n "$pid" && -r "/proc/$pid/stat" ]] || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

# True if PID is alive and still runs the program we started (guards against PID reuse).
is_ours() {
  local pid="$1" comm="$2"
  is_alive "$pid" && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$comm" ]]
}

# True if anything uses the port on any address or state: a listener, or one end of a
# connection (an outgoing connection's local port also blocks a later bind).
port_in_use() {
  [[ -n "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]]
}

# A port nobody uses, below the kernel's ephemeral range (where outgoing connections take
# their local ports, so a port free now could be taken a moment later) and above 10000.
# Random, to make clashes between concurrent stacks (parallel tests) unlikely.
free_port() {
  local low=10000 high port i
  high="$(awk '{print $1 - 1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32767)"
  ((high > low + 1000)) || high=32767
  for i in $(seq 1 200); do
    port=$((low + (RANDOM * 32768 + RANDOM) % (high - low)))
    [[ "$PORTS_TAKEN" == *" $port "* ]] && continue
    port_in_use "$port" && continue
    PORTS_TAKEN+="$port "
    echo "$port"
    return 0
  done
  die "no free port found"
}

# wait_ready WHAT PIDFILE_NAME CHECK...: polls CHECK until it succeeds, the process dies,
# or READY_TIMEOUT passes. Polling a real check is the point: no fixed sleeps.
wait_ready() {
  local what="$1" name="$2"; shift 2
  local deadline=$((SECONDS + READY_TIMEOUT)) pid
  while ! "$@" >/dev/null 2>&1; do
    pid="$(read_pid "$name")"
    if [[ -n "$pid" ]] && ! is_alive "$pid"; then
      show_log "$name"
      die "$what exited during start (see $(log_file "$name")); run '$SCRIPT down --state-dir $STATE_DIR' to clean up"
    fi
    if ((SECONDS >= deadline)); then
      show_log "$name"
      die "$what not ready after ${READY_TIMEOUT}s; run '$SCRIPT down --state-dir $STATE_DIR' to clean up"
    fi
    sleep 0.1
  done
}

log_file() { echo "$STATE_DIR/logs/$1.log"; }
show_log() {
  local f; f="$(log_file "$1")"
  [[ -f "$f" ]] && { log "last lines of $f:"; tail -n 20 "$f" >&2; }
  return 0
}

# PID files hold "PID COMM"; ports live beside them. These are the stack's own records,
# written the moment a process is spawned so `down` can stop a half-started stack.
record() { echo "$2 $3" >"$STATE_DIR/run/$1.pid"; }
read_pid() { [[ -f "$STATE_DIR/run/$1.pid" ]] && awk '{print $1}' "$STATE_DIR/run/$1.pid" || true; }
read_comm() { [[ -f "$STATE_DIR/run/$1.pid" ]] && awk '{print $2}' "$STATE_DIR/run/$1.pid" || true; }
read_port() { cat "$STATE_DIR/run/$1.port" 2>/dev/null || true; }

# Postgres refuses to run as root: as root, run its tools as the `postgres` system user.
as_pg() {
  if ((EUID == 0)); then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_bindir() {
  local dir
  if command -v pg_config >/dev/null && dir="$(pg_config --bindir 2>/dev/null)" && [[ -x "$dir/initdb" ]]; then
    echo "$dir"; return
  fi
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  [[ -n "$dir" && -x "$dir/initdb" ]] || die "PostgreSQL not found (apt-get install postgresql)"
  echo "$dir"
}

# ---------------------------------------------------------------------------------------
# the binaries

# release_bin PACKAGE OVERRIDE SOURCE...: the binary in $OVERRIDE's variable if set; else
# PACKAGE's release build, rebuilt when missing or older than its sources (cargo is only
# invoked when needed: it would wait on a busy build lock).
release_bin() {
  local package="$1" override="$2"; shift 2
  if [[ -n "${!override:-}" ]]; then
    [[ -x "${!override}" ]] || die "$override=${!override} is not executable"
    echo "${!override}"; return
  fi
  local target="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
  [[ "$target" == /* ]] || target="$REPO_ROOT/$target"
  local bin="$target/release/$package" source sources=()
  for source in "$@" Cargo.lock; do sources+=("$REPO_ROOT/$source"); done
  if [[ ! -x "$bin" ]] || [[ -n "$(find "${sources[@]}" -newer "$bin" -print -quit 2>/dev/null)" ]]; then
    log "building $package (release)"
    (cd "$REPO_ROOT" && cargo build --release --quiet -p "$package") >&2 || die "cargo build failed"
  fi
  echo "$bin"
}

backend_bin() { release_bin platform-backend PLATFORM_BACKEND_BIN docker/backend/src docker/backend/Cargo.toml; }
# The Postgres fault proxy is `loadgen proxy`.
loadgen_bin() { release_bin loadgen LOADGEN_BIN src Cargo.toml; }

# ---------------------------------------------------------------------------------------
# components

start_postgres() {
  local port bindir data="$STATE_DIR/postgres/data" pid
  port="$(free_port)"; bindir="$(pg_bindir)"
  mkdir -p "$STATE_DIR/postgres"
  ((EUID == 0)) && chown postgres: "$STATE_DIR/postgres"
  log "postgres: initdb and start on 127.0.0.1:$port"
  # trust on loopback only: this is a throwaway local drill database.
  as_pg "$bindir/initdb" -D "$data" -U platform --auth=trust -E UTF8 --no-instructions \
    >"$(log_file postgres-initdb)" 2>&1 || { show_log postgres-initdb; die "initdb failed"; }
  # No unix socket (nothing to clean up, no clash with a system cluster); TCP on loopback.
  # Enough connections for 20 backends' pools plus tests.
  as_pg "$bindir/pg_ctl" -D "$data" -l "$STATE_DIR/postgres/postgres.log" -W -s \
    -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c max_connections=400" \
    start >"$(log_file postgres-ctl)" 2>&1 || { show_log postgres-ctl; die "pg_ctl start failed"; }
  ln -sf "$STATE_DIR/postgres/postgres.log" "$(log_file postgres)"
  echo "$port" >"$STATE_DIR/run/postgres.port"
  # pg_ctl daemonises; the postmaster's PID is the first line of postmaster.pid.
  local deadline=$((SECONDS + READY_TIMEOUT))
  until pid="$(head -n 1 "$data/postmaster.pid" 2>/dev/null)" && [[ -n "$pid" ]]; do
    ((SECONDS < deadline)) || { show_log postgres; die "postgres did not start"; }
    sleep 0.1
  done
  record postgres "$pid" postgres
  wait_ready "postgres" postgres "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port"
  "$bindir/createdb" -h 127.0.0.1 -p "$port" -U platform platform || die "createdb failed"
}

# A loadgen fault proxy between the backends and Postgres. It starts clean: it only slows
# or breaks the link while a run's `{ proxy = "postgres" }` fault is in force.
start_pg_proxy() {
  local port control ready="$STATE_DIR/run/postgres-proxy.json"
  port="$(free_port)"; control="$(free_port)"
  log "postgres-proxy: 127.0.0.1:$port -> postgres, control API on 127.0.0.1:$control"
  setsid "$LOADGEN" proxy --listen "127.0.0.1:$port" --upstream "127.0.0.1:$(read_port postgres)" \
    --control "127.0.0.1:$control" --ready-file "$ready" </dev/null >"$(log_file postgres-proxy)" 2>&1 &
  record postgres-proxy $! "$(basename "$LOADGEN" | cut -c1-15)"
  echo "$port" >"$STATE_DIR/run/postgres-proxy.port"
  echo "$control" >"$STATE_DIR/run/postgres-proxy.control"
  wait_ready "postgres-proxy" postgres-proxy test -s "$ready"
}

start_redis() {
  local port; port="$(free_port)"
  mkdir -p "$STATE_DIR/redis"
  log "redis: start on 127.0.0.1:$port"
  # No persistence: Redis only caches here; Postgres holds every acknowledged write.
  setsid redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
    --dir "$STATE_DIR/redis" --daemonize no </dev/null >"$(log_file redis)" 2>&1 &
  record redis $! redis-server
  echo "$port" >"$STATE_DIR/run/redis.port"
  wait_ready "redis" redis redis_ping "$port"
}
redis_ping() { [[ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" == PONG ]]; }

# start_backend NAME PORT: spawns one instance (does not wait for it).
start_backend() {
  local name="$1" port="$2"
  # shellcheck disable=SC1091
  source "$STATE_DIR/run/stack.env"
  log "$name: start on 127.0.0.1:$port"
  local extra=()
  [[ -n "${SEGMENT_BYTES:-}" ]] && extra+=("SEGMENT_BYTES=$SEGMENT_BYTES")
  [[ -n "${DB_POOL_SIZE:-}" ]] && extra+=("DB_POOL_SIZE=$DB_POOL_SIZE")
  setsid env BACKEND_LISTEN="127.0.0.1:$port" DATABASE_URL="$DATABASE_URL" REDIS_URL="$REDIS_URL" \
    INSTANCE_NAME="$name" "${extra[@]}" "$BACKEND_BIN" </dev/null >>"$(log_file "$name")" 2>&1 &
  record "$name" $! "$(basename "$BACKEND_BIN" | cut -c1-15)"
  echo "$port" >"$STATE_DIR/run/$name.port"
}
http_ok() { curl -sf -o /dev/null --max-time 2 "$1"; }

# Throwaway TLS material for this start: a CA and a server certificate for 127.0.0.1 and
# localhost, signed by it (docker/nginx/make-tls.sh). The CA's key is gone once it signed;
# DIR/tls/ca.pem is what clients trust (state.json's "ca_file"). The key is mode 600: as
# root, nginx's master reads it before its workers switch to nobody.
make_tls() {
  log "tls: a throwaway CA and a certificate for 127.0.0.1 in $STATE_DIR/tls"
  rm -rf "$STATE_DIR/tls"
  "$REPO_ROOT/docker/nginx/make-tls.sh" "$STATE_DIR/tls" IP:127.0.0.1 DNS:localhost \
    >"$(log_file tls)" 2>&1 || { show_log tls; die "making the TLS certificate failed"; }
}

# nginx's readiness: each of its three listeners answers /nginx-health in its protocol
# (TLS verified against the stack's CA, h2c by prior knowledge, plain HTTP/1.1).
nginx_ready() {
  local https="$1" h2c="$2" http="$3"
  curl -sf -o /dev/null --max-time 2 --cacert "$STATE_DIR/tls/ca.pem" "https://127.0.0.1:$https/nginx-health" &&
    curl -sf -o /dev/null --max-time 2 --http2-prior-knowledge "http://127.0.0.1:$h2c/nginx-health" &&
    http_ok "http://127.0.0.1:$http/nginx-health"
}

start_nginx() {
  local port h2c http servers="" name
  port="$(free_port)"; h2c="$(free_port)"; http="$(free_port)"
  mkdir -p "$STATE_DIR/nginx/logs" "$STATE_DIR/nginx/temp"
  for name in $(backend_names); do
    servers+="server 127.0.0.1:$(read_port "$name") max_fails=2 fail_timeout=5s;"$'\n        '
  done
  make_tls
  render "$REPO_ROOT/docker/nginx/nginx.conf.template" >"$STATE_DIR/nginx/nginx.conf" \
    NGINX_HTTPS_LISTEN="127.0.0.1:$port" NGINX_H2C_LISTEN="127.0.0.1:$h2c" \
    NGINX_HTTP_LISTEN="127.0.0.1:$http" TLS_CERTIFICATE="$STATE_DIR/tls/server.pem" \
    TLS_CERTIFICATE_KEY="$STATE_DIR/tls/server.key" UPSTREAM_SERVERS="$servers" \
    RATE_LIMIT="$RATE_LIMIT" ACCESS_LOG="logs/access.log upstream buffer=64k flush=1s"
  log "nginx: start on 127.0.0.1:$port (TLS, h2), :$h2c (h2c), :$http (HTTP/1.1) (rate limit $RATE_LIMIT)"
  local args=(-p "$STATE_DIR/nginx/" -c nginx.conf -e "$STATE_DIR/nginx/logs/error.log"
    -g "daemon off; pid $STATE_DIR/nginx/nginx.pid;")
  nginx -t -q "${args[@]}" >"$(log_file nginx)" 2>&1 || { show_log nginx; die "nginx rejected its config"; }
  setsid nginx "${args[@]}" </dev/null >>"$(log_file nginx)" 2>&1 &
  record nginx $! nginx
  echo "$port" >"$STATE_DIR/run/nginx.port"
  echo "$h2c" >"$STATE_DIR/run/nginx-h2c.port"
  echo "$http" >"$STATE_DIR/run/nginx-http.port"
  wait_ready "nginx" nginx nginx_ready "$port" "$h2c" "$http"
}

start_prometheus() {
  local port targets="" name
  port="$(free_port)"
  mkdir -p "$STATE_DIR/prometheus/data"
  for name in $(backend_names); do
    targets+="${targets:+, }'127.0.0.1:$(read_port "$name")'"
  done
  # loadgen runs with a metrics listener announce themselves here (file_sd).
  mkdir -p "$STATE_DIR/prometheus/loadgen"
  render "$REPO_ROOT/docker/prometheus/prometheus.yml.template" >"$STATE_DIR/prometheus/prometheus.yml" \
    BACKEND_TARGETS="[$targets]" PROMETHEUS_SELF="127.0.0.1:$port" \
    DRILL_SCRAPE_INTERVAL=1s DRILL_SCRAPE_TIMEOUT=1s \
    LOADGEN_SD_FILES="$STATE_DIR/prometheus/loadgen/*.json"
  log "prometheus: start on 127.0.0.1:$port"
  setsid prometheus --config.file="$STATE_DIR/prometheus/prometheus.yml" \
    --storage.tsdb.path="$STATE_DIR/prometheus/data" --web.listen-address="127.0.0.1:$port" \
    --web.enable-remote-write-receiver \
    </dev/null >"$(log_file prometheus)" 2>&1 &
  record prometheus $! prometheus
  echo "$port" >"$STATE_DIR/run/prometheus.port"
  wait_ready "prometheus" prometheus http_ok "http://127.0.0.1:$port/-/ready"
}

# render TEMPLATE NAME=VALUE...: replaces ${NAME} placeholders, leaving everything else
# (nginx's $variables) alone, which envsubst without a variable list would not.
render() {
  local text pair; text="$(<"$1")"; shift
  for pair in "$@"; do
    text="${text//"\${${pair%%=*}}"/${pair#*=}}"
  done
  printf '%s\n' "$text"
}

backend_names() {
  local n; n="$(cat "$STATE_DIR/run/backends" 2>/dev/null || echo 0)"
  for ((i = 1; i <= n; i++)); do echo "backend-$i"; done
}

# Writes state.json atomically (temp file + rename): loadgen may read it at any time. The
# temp file is this process's own, so two writers at once (a restart loadgen began and a
# start-backend by hand) each rename a whole file instead of racing on one name.
write_state() {
  local pg redis nginx h2c http prom name first=1 tmp="$STATE_DIR/state.json.$$.tmp"
  pg="$(read_port postgres)"; redis="$(read_port redis)"; nginx="$(read_port nginx)"; prom="$(read_port prometheus)"
  h2c="$(read_port nginx-h2c)"; http="$(read_port nginx-http)"
  {
    printf '{\n  "version": 1,\n'
    # nginx's three listeners: TLS with h2/http1.1 (trust ca_file), h2c, plain HTTP/1.1.
    printf '  "base_url": "https://127.0.0.1:%s",\n' "$nginx"
    printf '  "http_url": "http://127.0.0.1:%s",\n' "$http"
    printf '  "h2c_url": "http://127.0.0.1:%s",\n' "$h2c"
    printf '  "ca_file": "%s",\n' "$STATE_DIR/tls/ca.pem"
    printf '  "state_dir": "%s",\n' "$STATE_DIR"
    # loadgen restarts instances it killed through this script (process faults).
    printf '  "stack_script": "%s",\n' "$(realpath "${BASH_SOURCE[0]}")"
    printf '  "nginx": {"port": %s, "h2c_port": %s, "http_port": %s, "pid": %s},\n' \
      "$nginx" "$h2c" "$http" "$(read_pid nginx)"
    printf '  "postgres": {"port": %s, "pid": %s, "url": "postgres://platform@127.0.0.1:%s/platform"},\n' \
      "$pg" "$(read_pid postgres)" "$pg"
    printf '  "redis": {"port": %s, "pid": %s, "url": "redis://127.0.0.1:%s"},\n' "$redis" "$(read_pid redis)" "$redis"
    printf '  "prometheus": {"port": %s, "pid": %s, "url": "http://127.0.0.1:%s"},\n' "$prom" "$(read_pid prometheus)" "$prom"
    # The backends reach Postgres through this proxy; loadgen sets its faults (chaos/network.rs).
    printf '  "proxies": [\n    {"name": "postgres", "listen": "127.0.0.1:%s", "upstream": "127.0.0.1:%s", "control": "http://127.0.0.1:%s", "pid": %s}\n  ],\n' \
      "$(read_port postgres-proxy)" "$pg" "$(cat "$STATE_DIR/run/postgres-proxy.control")" "$(read_pid postgres-proxy)"
    printf '  "backends": ['
    for name in $(backend_names); do
      ((first)) || printf ','
      first=0
      printf '\n    {"name": "%s", "port": %s, "pid": %s, "url": "http://127.0.0.1:%s"}' \
        "$name" "$(read_port "$name")" "$(read_pid "$name")" "$(read_port "$name")"
    done
    printf '\n  ]\n}\n'
  } >"$tmp"
  mv "$tmp" "$STATE_DIR/state.json"
}

# ---------------------------------------------------------------------------------------
# commands

all_components() { echo postgres postgres-proxy redis; backend_names; echo nginx prometheus; }

# True when every recorded component runs and the stack was fully started.
stack_running() {
  [[ -f "$STATE_DIR/state.json" ]] || return 1
  local name
  for name in $(all_components); do
    is_ours "$(read_pid "$name")" "$(read_comm "$name")" || return 1
  done
}

cmd_up() {
  if [[ -d "$STATE_DIR/run" ]]; then
    if stack_running && [[ "$(cat "$STATE_DIR/run/backends")" == "$BACKENDS" ]]; then
      log "already running: $(grep -o '"base_url": "[^"]*"' "$STATE_DIR/state.json")"
      echo "$STATE_DIR/state.json"
      return 0
    fi
    log "a stopped, partial or differently sized stack is in $STATE_DIR; stopping it first"
    cmd_down
  fi
  if [[ -d "$STATE_DIR" && ! -d "$STATE_DIR/run" && -n "$(ls -A "$STATE_DIR")" ]]; then
    die "$STATE_DIR exists, is not empty and is not a stack state dir; pick another --state-dir"
  fi
  local tool
  for tool in ss curl openssl redis-server redis-cli nginx prometheus setsid; do
    command -v "$tool" >/dev/null || die "$tool not found (see docker/local/quickstart.sh for the packages)"
  done
  local bin; bin="$(backend_bin)"
  LOADGEN="$(loadgen_bin)"
  mkdir -p "$STATE_DIR/run" "$STATE_DIR/logs"
  # Postgres (as user postgres) and nginx workers (as nobody) must traverse the state dir.
  chmod 755 "$STATE_DIR"
  echo "$BACKENDS" >"$STATE_DIR/run/backends"
  if [[ -n "$WATCH_PID" ]]; then start_watcher "$WATCH_PID"; fi

  start_postgres
  start_pg_proxy
  start_redis
  cat >"$STATE_DIR/run/stack.env" <<EOF
BACKEND_BIN='$bin'
DATABASE_URL='postgres://platform@127.0.0.1:$(read_port postgres-proxy)/platform'
REDIS_URL='redis://127.0.0.1:$(read_port redis)'
${SEGMENT_BYTES:+SEGMENT_BYTES='$SEGMENT_BYTES'}
${DB_POOL_SIZE:+DB_POOL_SIZE='$DB_POOL_SIZE'}
EOF
  local name
  # Start all instances at once (they race for the schema lock, as in production), then
  # wait for each one's /health/ready.
  for name in $(backend_names); do start_backend "$name" "$(free_port)"; done
  for name in $(backend_names); do
    wait_ready "$name" "$name" http_ok "http://127.0.0.1:$(read_port "$name")/health/ready"
  done
  start_nginx
  start_prometheus
  write_state
  log "up: $(grep -o '"base_url": "[^"]*"' "$STATE_DIR/state.json")"
  echo "$STATE_DIR/state.json"
}

# A watchdog that runs `down` when PID (e.g. a test binary) is gone, however it ended.
start_watcher() {
  setsid bash -c 'while [[ -e /proc/$1 ]]; do sleep 1; done; exec "$2" down --state-dir "$3"' \
    watcher "$1" "$SCRIPT" "$STATE_DIR" </dev/null >>"$(log_file watcher)" 2>&1 &
  record watcher $! bash
}

# stop NAME SIGNAL: signals the recorded process, waits (bounded), then SIGKILLs it.
stop() {
  local name="$1" sig="$2" pid comm
  pid="$(read_pid "$name")"; comm="$(read_comm "$name")"
  [[ -n "$pid" ]] || return 0
  if is_ours "$pid" "$comm"; then
    kill "-$sig" "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while is_alive "$pid" && ((SECONDS < deadline)); do sleep 0.05; done
    if is_alive "$pid"; then
      log "$name (pid $pid) ignored SIG$sig for 10s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      # Postgres children exit by themselves once the postmaster is gone; make sure.
      pkill -KILL -P "$pid" 2>/dev/null || true
      deadline=$((SECONDS + 5))
      while is_alive "$pid" && ((SECONDS < deadline)); do sleep 0.05; done
    fi
  fi
  rm -f "$STATE_DIR/run/$name.pid"
}

cmd_down() {
  if [[ ! -d "$STATE_DIR/run" ]]; then
    # Without run/ this is not (or no longer) a stack: never delete someone else's dir.
    log "nothing to stop in $STATE_DIR"
    return 0
  fi
  # The watchdog would otherwise run `down` a second time later (unless it is our caller).
  local watcher; watcher="$(read_pid watcher)"
  if [[ -n "$watcher" && "$watcher" != "$PPID" && "$watcher" != "$$" ]]; then stop watcher TERM; fi
  # Front to back: no new traffic, then drain the backends, then their stores.
  stop nginx QUIT
  stop prometheus TERM
  local name ports=() stoppers=()
  # Backends drain in parallel: each may take a while to finish its in-flight requests.
  for name in $(backend_names); do stop "$name" TERM & stoppers+=($!); done
  ((${#stoppers[@]} == 0)) || wait "${stoppers[@]}"
  stop postgres-proxy TERM
  stop redis TERM
  # SIGINT is Postgres's "fast" shutdown; SIGTERM ("smart") would wait for clients.
  stop postgres INT
  for name in $(all_components); do
    [[ -n "$(read_port "$name")" ]] && ports+=("$(read_port "$name")")
  done
  # The proxy's control API and nginx's h2c and HTTP/1.1 listeners have ports of their own.
  [[ -s "$STATE_DIR/run/postgres-proxy.control" ]] && ports+=("$(cat "$STATE_DIR/run/postgres-proxy.control")")
  for name in nginx-h2c nginx-http; do
    [[ -n "$(read_port "$name")" ]] && ports+=("$(read_port "$name")")
  done
  rm -rf "$STATE_DIR"
  local port busy=()
  for port in "${ports[@]}"; do
    [[ -n "$(ss -Htln "( sport = :$port )" 2>/dev/null)" ]] && busy+=("$port")
  done
  ((${#busy[@]} == 0)) || die "ports still in use after down: ${busy[*]}"
  log "down: stopped and removed $STATE_DIR"
}

cmd_status() {
  [[ -d "$STATE_DIR/run" ]] || { log "not running (no $STATE_DIR/run)"; return 1; }
  local name pid ok=0
  for name in $(all_components); do
    pid="$(read_pid "$name")"
    if is_ours "$pid" "$(read_comm "$name")"; then
      printf '%-14s running  pid %-8s port %s\n' "$name" "$pid" "$(read_port "$name")"
    else
      printf '%-14s STOPPED  pid %-8s port %s\n' "$name" "${pid:--}" "$(read_port "$name")"
      ok=1
    fi
  done
  [[ -f "$STATE_DIR/state.json" ]] && printf 'state: %s\n' "$STATE_DIR/state.json"
  return "$ok"
}

# True if NAME's recorded process is ours and not stopped (SIGSTOP): it runs, or is starting.
runs() {
  local pid; pid="$(read_pid "$1")"
  is_ours "$pid" "$(read_comm "$1")" && [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != T ]]
}

# The port of backend NAME of the running stack, or death with what exists.
backend_port() {
  local name="$1" port
  [[ -f "$STATE_DIR/state.json" ]] || die "no running stack in $STATE_DIR"
  port="$(read_port "$name")"
  [[ "$name" =~ ^backend-[0-9]+$ && -n "$port" ]] || die "unknown backend '$name' (have: $(backend_names | xargs))"
  echo "$port"
}

# Starts NAME again only if it is down: loadgen runs this as a fault's undo, possibly more
# than once (at the run's end, then on every `loadgen recover`), so a running instance is
# left alone and nothing is restarted twice.
cmd_start_backend() {
  local name="$1" port
  port="$(backend_port "$name")"
  local ready="http://127.0.0.1:$port/health/ready"
  if runs "$name"; then
    # Alive: ready now, or still starting (an earlier restart that was cut off): wait for it.
    local deadline=$((SECONDS + READY_TIMEOUT))
    while runs "$name" && ! http_ok "$ready" && ((SECONDS < deadline)); do sleep 0.1; done
    if runs "$name" && http_ok "$ready"; then
      write_state
      log "$name already running on 127.0.0.1:$port (pid $(read_pid "$name")); nothing to do"
      return 0
    fi
    log "$name (pid $(read_pid "$name")) is not ready; starting it again"
  fi
  restart_now "$name" "$port"
}

# Stops NAME (whatever its state) and starts it again: a deliberate restart.
cmd_restart_backend() {
  local name="$1" port
  port="$(backend_port "$name")"
  restart_now "$name" "$port"
}

restart_now() {
  local name="$1" port="$2"
  local ready="http://127.0.0.1:$port/health/ready"
  stop "$name" TERM
  # A paused (SIGSTOP) instance stays bound to its port until killed, so wait for it.
  local deadline=$((SECONDS + 10))
  while [[ -n "$(ss -Htln "( sport = :$port )" 2>/dev/null)" ]]; do
    ((SECONDS < deadline)) || die "port $port of $name is still in use"
    sleep 0.05
  done
  start_backend "$name" "$port"
  wait_ready "$name" "$name" http_ok "$ready"
  write_state
  log "$name restarted on 127.0.0.1:$port (pid $(read_pid "$name"))"
}

# ---------------------------------------------------------------------------------------

main() {
  (($# >= 1)) || usage
  local cmd="$1"; shift
  local target=""
  if [[ "$cmd" == restart-backend || "$cmd" == start-backend ]]; then
    (($# >= 1)) || usage
    target="$1"; shift
  fi
  while (($#)); do
    case "$1" in
      --backends) BACKENDS="${2:?}"; shift 2 ;;
      --state-dir) STATE_DIR="${2:?}"; shift 2 ;;
      --rate-limit) RATE_LIMIT=on; shift ;;
      --watch-pid) WATCH_PID="${2:?}"; shift 2 ;;
      -h|--help) usage ;;
      *) log "unknown argument: $1"; usage ;;
    esac
  done
  [[ "$BACKENDS" =~ ^[1-9][0-9]?$ ]] || die "--backends must be 1 to 99"
  mkdir -p "$(dirname "$STATE_DIR")"
  STATE_DIR="$(cd "$(dirname "$STATE_DIR")" && pwd)/$(basename "$STATE_DIR")"
  case "$cmd" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    restart-backend) cmd_restart_backend "$target" ;;
    start-backend) cmd_start_backend "$target" ;;
    *) usage ;;
  esac
}

main "$@"
