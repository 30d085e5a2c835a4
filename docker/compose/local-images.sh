#!/usr/bin/env bash
# Builds the images docker/compose/docker-compose.local.yml runs, on a machine with Docker
# but no registry (no `docker pull`, no `FROM`): every image is a `docker import` of a
# tarball assembled from this host's Debian binaries.
#
#   local-images.sh build [--tag TAG] [--backend-bin PATH] [--loadgen-bin PATH]
#   local-images.sh remove [--tag TAG]
#   local-images.sh configs   # regenerate nginx.conf and prometheus.yml beside this script
#                             # from docker/nginx and docker/prometheus's templates
#
# Images: loadgen-local/{postgres,redis,backend,loadgen,nginx,prometheus}:TAG (TAG defaults
# to "latest"; docker-compose.local.yml reads it from LOCAL_IMAGE_TAG). Each holds
#   - busybox-static as /bin/sh and its applets (wget for healthchecks, mkdir, ...),
#   - /etc/passwd and /etc/group with the non-root users the services run as
#     (postgres, redis, nginx, app, nobody), /etc/nsswitch.conf, /tmp,
#   - the service's host binaries plus every library `ldd` lists (cp --parents -L), and
#     the data files it needs (Postgres: its share/ and lib/ trees and the time zones).
# The backend binary is --backend-bin (default: $PLATFORM_BACKEND_BIN, else
# target/release/platform-backend); the loadgen binary is --loadgen-bin (default:
# $LOADGEN_BIN, else target/release/loadgen). Both must be built on this host (same glibc).
# loadgen-local/loadgen is loadgen itself (entrypoint `loadgen`, user app, /out writable),
# like docker/Dockerfile.loadgen: the Compose platform runs it as `loadgen proxy` in front
# of Postgres, and anything else may run other subcommands in it.
#
# Host packages: busybox-static, postgresql(-15), redis-server (+ redis-tools), nginx,
# openssl, prometheus, docker.io.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"

TAG="latest"
BACKEND_BIN="${PLATFORM_BACKEND_BIN:-$REPO_ROOT/target/release/platform-backend}"
LOADGEN_BIN="${LOADGEN_BIN:-$REPO_ROOT/target/release/loadgen}"
PG_BIN="/usr/lib/postgresql/15/bin"
IMAGES=(postgres redis backend loadgen nginx prometheus)
OWNED=()

log() { printf 'local-images: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  # The header comment, up to the first line that is not a comment.
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
  exit 2
}

# ---------------------------------------------------------------------------------------
# root file systems

# add_files ROOT PATH...: copies files (following symlinks) to the same paths under ROOT.
add_files() {
  local root="$1"; shift
  local f
  for f in "$@"; do
    [[ -e "$f" ]] || die "$f not found"
    cp --parents -L "$f" "$root"
  done
}

# add_tree ROOT DIR...: copies directory trees to the same paths under ROOT.
add_tree() {
  local root="$1"; shift
  local d
  for d in "$@"; do
    [[ -d "$d" ]] || die "$d not found"
    mkdir -p "$root$(dirname "$d")"
    cp -a "$d" "$root$(dirname "$d")/"
  done
}

# add_libs ROOT FILE...: copies every library `ldd` lists for the FILEs (executables or
# shared objects) to the same paths under ROOT. A static FILE lists nothing.
add_libs() {
  local root="$1"; shift
  local f libs
  for f in "$@"; do
    # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and "/lib64/ld-linux... (0x...)"
    libs="$(ldd "$f" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')" || true
    [[ -z "$libs" ]] || add_files "$root" $libs
  done
}

# add_bins ROOT BIN...: the binaries and their libraries.
add_bins() {
  local root="$1"; shift
  add_files "$root" "$@"
  add_libs "$root" "$@"
}

# base ROOT: busybox, users, name resolution, /tmp.
base() {
  local root="$1" busybox applet
  busybox="$(command -v busybox)" || die "busybox not found (apt-get install busybox-static)"
  ldd "$busybox" >/dev/null 2>&1 && die "$busybox is dynamically linked; install busybox-static"
  mkdir -p "$root"/{bin,etc,tmp,root,home/app,var/run,usr/local/bin}
  cp -L "$busybox" "$root/bin/busybox"
  for applet in $("$busybox" --list); do
    [[ -e "$root/bin/$applet" ]] || ln -s busybox "$root/bin/$applet"
  done
  chmod 1777 "$root/tmp"
  cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nginx:x:101:101:nginx:/nonexistent:/bin/false
redis:x:998:998:redis:/tmp:/bin/false
postgres:x:999:999:PostgreSQL administrator:/var/lib/postgresql:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
  cat >"$root/etc/group" <<'EOF'
root:x:0:
nginx:x:101:
redis:x:998:
postgres:x:999:
app:x:1000:
nogroup:x:65534:
EOF
  cat >"$root/etc/nsswitch.conf" <<'EOF'
passwd: files
group: files
hosts: files dns
EOF
  OWNED+=("1000:1000 home/app")
}

rootfs_postgres() {
  local root="$1" so
  [[ -x "$PG_BIN/postgres" ]] || die "$PG_BIN/postgres not found (apt-get install postgresql-15)"
  add_bins "$root" "$PG_BIN"/{postgres,initdb,pg_isready,pg_ctl}
  # initdb and the server load share/ (catalog, timezone sets) and lib/ (plpgsql, ...).
  add_tree "$root" /usr/share/postgresql/15 /usr/lib/postgresql/15/lib
  # Not the LLVM JIT (libLLVM alone is ~100 MB): without it Postgres simply does not JIT.
  rm -rf "$root/usr/lib/postgresql/15/lib/bitcode" "$root"/usr/lib/postgresql/15/lib/llvmjit*
  while IFS= read -r so; do add_libs "$root" "$so"; done \
    < <(find "$root/usr/lib/postgresql/15/lib" -name '*.so' | sed "s|^$root||")
  # Debian builds Postgres with the system time zone database.
  if [[ -d /usr/share/zoneinfo ]]; then add_tree "$root" /usr/share/zoneinfo; fi
  mkdir -p "$root/var/lib/postgresql/data" "$root/var/run/postgresql"
  chmod 700 "$root/var/lib/postgresql/data"
  OWNED+=("999:999 var/lib/postgresql" "999:999 var/run/postgresql")
  # The same contract as the official image: POSTGRES_USER, POSTGRES_DB,
  # POSTGRES_HOST_AUTH_METHOD; initdb on first start, then exec the command.
  cat >"$root/usr/local/bin/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_HOST_AUTH_METHOD:=trust}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  echo "docker-entrypoint: initdb in $PGDATA (user $POSTGRES_USER)" >&2
  initdb -D "$PGDATA" -U "$POSTGRES_USER" --auth="$POSTGRES_HOST_AUTH_METHOD" \
    -E UTF8 --locale=C --no-instructions >&2
  # Any address of the container's private network; the port is never published.
  echo "host all all all $POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.auto.conf"
  if [ "$POSTGRES_DB" != postgres ]; then
    echo "CREATE DATABASE \"$POSTGRES_DB\";" | postgres --single -D "$PGDATA" postgres >/dev/null
  fi
fi
exec "$@"
EOF
  chmod 755 "$root/usr/local/bin/docker-entrypoint.sh"
}

rootfs_redis() {
  local root="$1"
  add_bins "$root" /usr/bin/redis-server /usr/bin/redis-cli
}

rootfs_backend() {
  local root="$1"
  [[ -x "$BACKEND_BIN" ]] || die "backend binary $BACKEND_BIN not found (cargo build --release -p platform-backend, or --backend-bin)"
  add_libs "$root" "$BACKEND_BIN"
  cp -L "$BACKEND_BIN" "$root/usr/local/bin/platform-backend"
}

rootfs_loadgen() {
  local root="$1"
  [[ -x "$LOADGEN_BIN" ]] || die "loadgen binary $LOADGEN_BIN not found (cargo build --release -p loadgen, or --loadgen-bin)"
  add_libs "$root" "$LOADGEN_BIN"
  cp -L "$LOADGEN_BIN" "$root/usr/local/bin/loadgen"
  # Where runs write their reports when a directory is mounted there (as the Dockerfile).
  mkdir -p "$root/out"
  OWNED+=("1000:1000 out")
}

rootfs_nginx() {
  local root="$1"
  # openssl makes the throwaway TLS certificate at start (docker/nginx/make-tls.sh); it
  # reads no system config (the script writes its own).
  command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"
  add_bins "$root" /usr/sbin/nginx "$(command -v openssl)"
  mkdir -p "$root/etc/nginx"
}

rootfs_prometheus() {
  local root="$1"
  add_bins "$root" /usr/bin/prometheus
  mkdir -p "$root/etc/prometheus" "$root/prometheus"
  OWNED+=("65534:65534 prometheus")
}

# import_image NAME ROOT CHANGE...: the tarball of ROOT as loadgen-local/NAME:TAG. Files
# belong to root, except the trees listed in OWNED ("UID:GID path"), which belong to the
# service users: tar sets the owners, so no chown (and no root) is needed here.
import_image() {
  local name="$1" root="$2"; shift 2
  local changes=() excludes=() c entry tarball="$root.tar"
  for c in "$@"; do changes+=(--change "$c"); done
  for entry in "${OWNED[@]}"; do excludes+=("--exclude=./${entry#* }"); done
  tar --numeric-owner --owner=0 --group=0 --anchored "${excludes[@]}" -C "$root" -cf "$tarball" .
  for entry in "${OWNED[@]}"; do
    tar --numeric-owner --owner="${entry%%:*}" --group="$(echo "${entry%% *}" | cut -d: -f2)" \
      -C "$root" -rf "$tarball" "./${entry#* }"
  done
  local old new
  old="$(docker image inspect --format '{{.Id}}' "loadgen-local/$name:$TAG" 2>/dev/null || true)"
  new="$(docker import "${changes[@]}" --message "loadgen local image ($name)" "$tarball" \
    "loadgen-local/$name:$TAG")"
  rm -f "$tarball"
  # A rebuild under the same tag would leave the previous image dangling; remove it
  # unless a container still uses it.
  if [[ -n "$old" && "$old" != "$new" ]]; then docker image rm "$old" >/dev/null 2>&1 || true; fi
  log "built loadgen-local/$name:$TAG"
}

cmd_build() {
  command -v docker >/dev/null || die "docker not found"
  docker info >/dev/null 2>&1 || die "the Docker daemon is not reachable"
  local name root
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/local-images.XXXXXX")"
  trap 'rm -rf "$WORK"' EXIT
  local work="$WORK"
  local path="PATH=/usr/local/bin:/usr/bin:/usr/sbin:/bin"
  for name in "${IMAGES[@]}"; do
    root="$work/$name"
    OWNED=()
    base "$root"
    "rootfs_$name" "$root"
    "import_$name" "$root" "$path"
    rm -rf "$root"
  done
}

import_postgres() {
  local path="$2"
  import_image postgres "$1" "ENV $path:$PG_BIN" "ENV PGDATA=/var/lib/postgresql/data" \
    "USER postgres" 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' 'CMD ["postgres"]' \
    "EXPOSE 5432"
}

import_redis() {
  local path="$2"
  import_image redis "$1" "ENV $path" "USER redis" "WORKDIR /tmp" 'CMD ["redis-server"]' \
    "EXPOSE 6379"
}

import_backend() {
  local path="$2"
  import_image backend "$1" "ENV $path" "USER app" "WORKDIR /home/app" \
    'ENTRYPOINT ["/usr/local/bin/platform-backend"]' "EXPOSE 8080"
}

import_loadgen() {
  local path="$2"
  # No fixed command: `docker run IMAGE proxy ...`, `... run SCENARIO`; bare, it prints help.
  import_image loadgen "$1" "ENV $path" "USER app" "WORKDIR /home/app" \
    'ENTRYPOINT ["/usr/local/bin/loadgen"]' 'CMD ["--help"]'
}

import_nginx() {
  local path="$2"
  import_image nginx "$1" "ENV $path" "USER nginx" 'CMD ["nginx", "-g", "daemon off;"]' \
    "EXPOSE 8080" "EXPOSE 8081" "EXPOSE 8443"
}

import_prometheus() {
  local path="$2"
  import_image prometheus "$1" "ENV $path" "USER nobody" "WORKDIR /prometheus" \
    'ENTRYPOINT ["/usr/bin/prometheus"]' \
    'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.enable-remote-write-receiver"]' \
    "EXPOSE 9090"
}

# render TEMPLATE NAME=VALUE...: replaces ${NAME} placeholders (as docker/local/stack.sh).
render() {
  local text pair; text="$(<"$1")"; shift
  for pair in "$@"; do
    text="${text//"\${${pair%%=*}}"/${pair#*=}}"
  done
  printf '%s\n' "$text"
}

# The Compose configs are the local stack's templates rendered for the compose network;
# the test the_compose_configs_are_the_local_templates_rendered checks they still are.
cmd_configs() {
  local servers="" i indent=$'\n        '
  for i in 1 2 3; do
    servers+="${servers:+$indent}server backend-$i:8080 max_fails=2 fail_timeout=5s;"
  done
  {
    cat <<'EOF'
# GENERATED from docker/nginx/nginx.conf.template for the Compose setup (the test
# docker/backend/tests/stack/compose.rs fails if the two drift apart; regenerate with
# docker/compose/local-images.sh configs). Placeholders:
#   NGINX_HTTPS_LISTEN=8443  NGINX_H2C_LISTEN=8081  NGINX_HTTP_LISTEN=8080
#   TLS_CERTIFICATE=/tmp/nginx/tls/server.pem  TLS_CERTIFICATE_KEY=/tmp/nginx/tls/server.key
#   (made when the container starts, see docker/docker-compose.yml)
#   RATE_LIMIT=off  ACCESS_LOG="/dev/stdout upstream"
#   UPSTREAM_SERVERS=backend-1:8080 .. backend-3:8080 (max_fails=2 fail_timeout=5s)
# Paths are relative to the prefix nginx is started with (-p /tmp/nginx/, see
# docker/docker-compose.yml). Upstream names are resolved once, at start.
#
EOF
    render "$REPO_ROOT/docker/nginx/nginx.conf.template" NGINX_HTTPS_LISTEN=8443 \
      NGINX_H2C_LISTEN=8081 NGINX_HTTP_LISTEN=8080 \
      TLS_CERTIFICATE=/tmp/nginx/tls/server.pem TLS_CERTIFICATE_KEY=/tmp/nginx/tls/server.key \
      UPSTREAM_SERVERS="$servers" RATE_LIMIT=off ACCESS_LOG="/dev/stdout upstream"
  } >"$SCRIPT_DIR/nginx.conf"
  {
    cat <<'EOF'
# GENERATED from docker/prometheus/prometheus.yml.template for the Compose setup
# (regenerate with docker/compose/local-images.sh configs):
#   BACKEND_TARGETS=['backend-1:8080', 'backend-2:8080', 'backend-3:8080']
#   PROMETHEUS_SELF=localhost:9090
#   DRILL_SCRAPE_INTERVAL=5s DRILL_SCRAPE_TIMEOUT=4s
#   LOADGEN_SD_FILES=/etc/prometheus/loadgen/*.json
#
EOF
    render "$REPO_ROOT/docker/prometheus/prometheus.yml.template" \
      "BACKEND_TARGETS=['backend-1:8080', 'backend-2:8080', 'backend-3:8080']" \
      PROMETHEUS_SELF=localhost:9090 DRILL_SCRAPE_INTERVAL=5s DRILL_SCRAPE_TIMEOUT=4s \
      "LOADGEN_SD_FILES=/etc/prometheus/loadgen/*.json"
  } >"$SCRIPT_DIR/prometheus.yml"
  log "wrote $SCRIPT_DIR/nginx.conf and $SCRIPT_DIR/prometheus.yml"
}

cmd_remove() {
  local name
  for name in "${IMAGES[@]}"; do
    docker image rm "loadgen-local/$name:$TAG" >/dev/null 2>&1 && log "removed loadgen-local/$name:$TAG" || true
  done
}

main() {
  [[ $# -ge 1 ]] || usage
  local cmd="$1"; shift
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --tag) TAG="${2:?--tag needs a value}"; shift 2 ;;
      --backend-bin) BACKEND_BIN="${2:?--backend-bin needs a value}"; shift 2 ;;
      --loadgen-bin) LOADGEN_BIN="${2:?--loadgen-bin needs a value}"; shift 2 ;;
      -h|--help) usage ;;
      *) die "unknown argument $1" ;;
    esac
  done
  [[ "$TAG" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "invalid tag $TAG"
  case "$cmd" in
    build) cmd_build ;;
    remove) cmd_remove ;;
    configs) cmd_configs ;;
    *) usage ;;
  esac
}

main "$@"
