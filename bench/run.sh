#!/usr/bin/env bash
# Benchmarks loadgen against its peers (wrk, oha, Goose) on the same loopback nginx, in one
# run, and prints requests/s and the ratios. Quote the ratios, not the absolute numbers:
# these machines are shared and noisy.
#
#   bash bench/run.sh [--duration 10s] [--connections 64] [--repeat 1]
#
# nginx (1 worker) is pinned to core 1 and every load generator to core 0, one thread each.
# Installs what is missing: wrk and nginx from Debian, oha from crates.io, Goose built from
# crates.io in bench/goose (a bench-only crate outside loadgen's workspace).
set -euo pipefail

DURATION=10s
CONNECTIONS=64
REPEAT=1
while (($#)); do
  case "$1" in
    --duration) DURATION="$2"; shift 2 ;;
    --connections) CONNECTIONS="$2"; shift 2 ;;
    --repeat) REPEAT="$2"; shift 2 ;;
    *) echo "usage: bench/run.sh [--duration 10s] [--connections 64] [--repeat N]" >&2; exit 2 ;;
  esac
done
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_ONLY="${DURATION%s}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

say() { printf 'bench: %s\n' "$*" >&2; }

install_tools() {
  local missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  command -v nginx >/dev/null || missing+=(nginx)
  command -v taskset >/dev/null || missing+=(util-linux)
  if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if ! command -v oha >/dev/null; then
    say "installing oha from crates.io"
    cargo install oha --locked >/dev/null
  fi
  say "building loadgen and the Goose bench (release)"
  (cd "$ROOT" && cargo build --release -p loadgen >/dev/null)
  (cd "$ROOT/bench/goose" && cargo build --release >/dev/null)
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

start_nginx() {
  WORK="$(mktemp -d)"
  PORT="$(free_port)"
  sed -e "s#@DIR@#$WORK#g" -e "s#@PORT@#$PORT#g" "$ROOT/bench/nginx.conf.template" >"$WORK/nginx.conf"
  taskset -c 1 nginx -c "$WORK/nginx.conf" -p "$WORK" &
  NGINX_PID=$!
  trap 'kill "$NGINX_PID" 2>/dev/null || true; wait "$NGINX_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$PORT/" >/dev/null && return
    sleep 0.05
  done
  say "nginx did not come up"; exit 3
}

run_wrk() {
  taskset -c 0 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" "http://127.0.0.1:$PORT/" | awk '/Requests\/sec/ {print $2}'
}

run_oha() {
  # oha has no thread flag; taskset keeps its runtime on one core.
  taskset -c 0 oha -c "$CONNECTIONS" -z "$DURATION" --no-tui --output-format json "http://127.0.0.1:$PORT/" 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["summary"]["requestsPerSec"])'
}

run_loadgen() {
  local scenario="$1" out
  out="$(mktemp -d)"
  taskset -c 0 "$TARGET_DIR/release/loadgen" run "$ROOT/bench/scenarios/$scenario.toml" \
    --target "http://127.0.0.1:$PORT" --threads 1 --duration "$DURATION" --quiet --out "$out" >/dev/null
  python3 -c 'import json,glob,sys; print(json.load(open(glob.glob(sys.argv[1]+"/*/summary.json")[0]))["totals"]["rps"])' "$out"
  rm -rf "$out"
}

run_goose() {
  local log
  log="$(mktemp)"
  taskset -c 0 "$ROOT/bench/goose/target/release/goose-bench" --host "http://127.0.0.1:$PORT" \
    --users "$CONNECTIONS" --increase-rate "$CONNECTIONS" --run-time "$DURATION" --quiet \
    --report-file "$log.json" >/dev/null 2>&1 || true
  python3 - "$log.json" "$SECONDS_ONLY" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
# Goose's JSON report nests its request tables; the aggregate row has the largest
# request count of any row that carries one.
def counts(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "number_of_requests" and isinstance(value, (int, float)):
                yield value
            else:
                yield from counts(value)
    elif isinstance(node, list):
        for item in node:
            yield from counts(item)
total = max(counts(report), default=0)
print(float(total) / float(sys.argv[2]))
PY
  rm -f "$log" "$log.json"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

measure() {
  local tool="$1" values=()
  for _ in $(seq 1 "$REPEAT"); do
    case "$tool" in
      wrk) values+=("$(run_wrk)") ;;
      oha) values+=("$(run_oha)") ;;
      goose) values+=("$(run_goose)") ;;
      loadgen) values+=("$(run_loadgen plain)") ;;
      loadgen-mix) values+=("$(run_loadgen mix)") ;;
    esac
  done
  printf '%s\n' "${values[@]}" | median
}

install_tools
start_nginx
say "target nginx on 127.0.0.1:$PORT (core 1); generators on core 0; $CONNECTIONS connections, $DURATION each"
declare -A RPS
for tool in wrk oha goose loadgen loadgen-mix; do
  RPS[$tool]="$(measure "$tool")"
  say "$tool: ${RPS[$tool]} req/s"
done

mkdir -p "$ROOT/bench/out"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
python3 - "$ROOT/bench/out/$stamp.json" "${RPS[wrk]}" "${RPS[oha]}" "${RPS[goose]}" "${RPS[loadgen]}" "${RPS[loadgen-mix]}" <<'PY'
import json, sys
path, wrk, oha, goose, plain, mix = sys.argv[1], *map(float, sys.argv[2:])
ratio = lambda a, b: a / b if b else float("nan")
result = {
    "requests_per_second": {"wrk": wrk, "oha": oha, "goose": goose, "loadgen": plain, "loadgen_mix": mix},
    "ratios": {
        "loadgen/oha": ratio(plain, oha),
        "loadgen/wrk": ratio(plain, wrk),
        "loadgen/goose": ratio(plain, goose),
        "loadgen-mix/loadgen": ratio(mix, plain),
    },
    "goals": {"loadgen/oha": ">= 1.0", "loadgen/wrk": ">= 0.8", "loadgen-mix/loadgen": ">= 0.5"},
}
json.dump(result, open(path, "w"), indent=2)
print(f"{'tool':<14}{'req/s':>12}")
for name, value in result["requests_per_second"].items():
    print(f"{name:<14}{value:>12.0f}")
print()
for name, value in result["ratios"].items():
    goal = result["goals"].get(name, "")
    print(f"{name:<22}{value:>6.2f}  {('goal ' + goal) if goal else ''}")
print(f"\n(written to {path})")
PY
