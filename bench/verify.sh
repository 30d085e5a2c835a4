#!/usr/bin/env bash
# Verification's memory: does reading back every acknowledged write keep loadgen's memory
# flat as the number of writes grows? (Issue 16: "verification at 10,000 recorded writes
# keeps loadgen's memory flat — streamed from the file".)
#
#   bash bench/verify.sh [--no-build] [--writes 1000,10000,100000] [--rate 2000]
#
# Each run drives the same open-model load (RATE journeys/s for as long as the largest
# write count needs) at an nginx on loopback that answers POST /items with a fresh id and
# GET /items/ID with 200; a share of the journeys write (and record) and the rest read, so
# every run sends the same requests and only the number of recorded writes differs. After
# the load loadgen reads every one back (verify_rate 20000/s). Printed per run: the writes
# recorded and read back, acks.jsonl's size, loadgen's peak RSS (GNU time), and the ratio
# of each run's peak RSS to the smallest run's: 1.0 is flat.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench/verify.sh: %s\n' "$*" >&2; exit 2; }

BUILD=1
WRITES="1000,10000,100000"
RATE=2000
while (($#)); do
  case "$1" in
    --no-build) BUILD=0 ;;
    --writes) WRITES="${2:?}"; shift ;;
    --rate) RATE="${2:?}"; shift ;;
    *) die "unknown argument $1" ;;
  esac
  shift
done
IFS=, read -r -a COUNTS <<<"$WRITES"
MAX=0
for n in "${COUNTS[@]}"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "--writes wants whole numbers, not '$n'"
  ((n > MAX)) && MAX=$n
done
# Every run plays the same plan: long enough for the largest count at RATE journeys/s.
SECONDS_PLANNED=$(((MAX + RATE - 1) / RATE))
DURATION="${SECONDS_PLANNED}s"
WORK="$(mktemp -d)"
NGINX_PID=""
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
trap cleanup EXIT

command -v nginx >/dev/null || apt_install nginx
[[ -x /usr/bin/time ]] || apt_install time
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
if ((BUILD)); then
  say "building loadgen (release)"
  (cd "$ROOT" && cargo build --release -q -p loadgen)
fi
LOADGEN="$TARGET_DIR/release/loadgen"
[[ -x "$LOADGEN" ]] || die "no $LOADGEN: run without --no-build"

PORT="$(free_port)"
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/nginx/body;
  server {
    listen 127.0.0.1:$PORT;
    default_type application/json;
    location = /items { return 201 '{"id":"\$request_id"}'; }
    location /items/ { return 200 '{"ok":true}'; }
    location = /ping { return 200 '{"ok":true}'; }
  }
}
EOF
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
NGINX_PID=$!
for _ in $(seq 1 100); do
  curl -sf -o /dev/null "http://127.0.0.1:$PORT/ping" && break
  sleep 0.05
done

total=$((RATE * SECONDS_PLANNED))
printf '%-10s %-10s %-12s %-12s %-12s %-10s\n' writes verified "acks bytes" "verify req" "peak RSS MB" "RSS ratio"
base_rss=""
for n in "${COUNTS[@]}"; do
  # Of `total` journeys, n write: weights n and total - n.
  reads=$((total - n))
  cat >"$WORK/verify-$n.toml" <<EOF
name = "verify-bench"
seed = 1
verify_rate = "20000/s"
[target]
base_url = "http://127.0.0.1:$PORT"
compression = false
cookies = false
[load]
model = "open"
start_rate = "$RATE/s"
max_in_flight = 10000
[[load.stage]]
duration = "$DURATION"
rate = "$RATE/s"
[[journey]]
name = "write"
weight = $n
[[journey.step]]
name = "write"
method = "POST"
url = "/items"
json = { v = 1 }
expect = 201
extract = { item = "/id" }
record = { kind = "item", id = "{{item}}" }
EOF
  if ((reads > 0)); then
    cat >>"$WORK/verify-$n.toml" <<EOF
[[journey]]
name = "read"
weight = $reads
[[journey.step]]
name = "read"
url = "/ping"
EOF
  fi
  cat >>"$WORK/verify-$n.toml" <<EOF
[[verify]]
kind = "item"
url = "/items/{{ack.id}}"
EOF
  /usr/bin/time -f '%M' -o "$WORK/rss-$n" \
    "$LOADGEN" run "$WORK/verify-$n.toml" --out "$WORK/out-$n" --quiet >/dev/null 2>"$WORK/err-$n" || true
  run_dir="$(ls -d "$WORK/out-$n"/*/ | head -n 1)"
  rss_kb="$(tail -n 1 "$WORK/rss-$n")"
  read -r verified requests < <(python3 - "$run_dir/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
v = s.get("verify") or {}
kinds = v.get("kinds") or [{}]
print(kinds[0].get("verified", 0), v.get("requests", 0))
PY
)
  bytes="$(stat -c %s "$run_dir/acks.jsonl")"
  [[ -n "$base_rss" ]] || base_rss="$rss_kb"
  ratio="$(python3 -c "print(f'{$rss_kb / $base_rss:.2f}')")"
  printf '%-10s %-10s %-12s %-12s %-12s %-10s\n' "$n" "$verified" "$bytes" "$requests" \
    "$(python3 -c "print(f'{$rss_kb / 1024:.1f}')")" "$ratio"
done
