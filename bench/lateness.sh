#!/usr/bin/env bash
# Generator lateness at a fixed arrival rate: how late each open-model arrival's request
# began after its scheduled instant (summary.json generator.lag_us), with the target's
# latency and the generator's CPU beside it. Several loadgen binaries (e.g. before and after
# a change) run interleaved against the same loopback nginx, pinned as in bench/run.sh.
#
#   bash bench/lateness.sh [--rate 2000] [--duration 10s] [--repeat 3] [NAME=BINARY ...]
#
# Default binary: loadgen=target/release/loadgen (built first). Medians of the repeats are
# printed; quote them as before/after pairs from one run, not as absolute figures.
set -euo pipefail

RATE=2000
DURATION=10s
REPEAT=3
BINARIES=()
while (($#)); do
  case "$1" in
    --rate) RATE="${2:?}"; shift 2 ;;
    --duration) DURATION="${2:?}"; shift 2 ;;
    --repeat) REPEAT="${2:?}"; shift 2 ;;
    -h | --help) sed -n 2,11p "$0"; exit 0 ;;
    *=*) BINARIES+=("$1"); shift ;;
    *) echo "lateness: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$RATE" =~ ^[1-9][0-9]*$ ]] || { echo "lateness: --rate wants a positive integer" >&2; exit 2; }
[[ "$REPEAT" =~ ^[1-9][0-9]*$ ]] || { echo "lateness: --repeat wants a positive integer" >&2; exit 2; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ((${#BINARIES[@]} == 0)); then
  (cd "$ROOT" && cargo build --release -p loadgen) >/dev/null
  BINARIES=("loadgen=${CARGO_TARGET_DIR:-$ROOT/target}/release/loadgen")
fi
for pair in "${BINARIES[@]}"; do
  [[ -x "${pair#*=}" ]] || { echo "lateness: ${pair#*=} is not an executable" >&2; exit 2; }
done
for tool in nginx taskset python3 curl; do
  command -v "$tool" >/dev/null || { echo "lateness: needs $tool (bench/run.sh installs it)" >&2; exit 2; }
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/loadgen-lateness.XXXXXX")"
NGINX_PID=""
cleanup() {
  [[ -n "$NGINX_PID" ]] && { kill "$NGINX_PID" 2>/dev/null || true; wait "$NGINX_PID" 2>/dev/null || true; }
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
mkdir -p "$WORK/nginx"
sed -e "s#@DIR@#$WORK/nginx#g" -e "s#@PORT@#$PORT#g" "$ROOT/bench/nginx.conf.template" >"$WORK/nginx/nginx.conf"
taskset -c 1 nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" -e "$WORK/nginx/error.log" &
NGINX_PID=$!
for _ in $(seq 1 200); do
  curl -sf -o /dev/null "http://127.0.0.1:$PORT/" && break
  sleep 0.05
done
curl -sf -o /dev/null "http://127.0.0.1:$PORT/" || { cat "$WORK/nginx/error.log" >&2; exit 3; }

sed -e "s#^rate = .*#rate = \"$RATE/s\"#" -e "s#^start_rate = .*#start_rate = \"$RATE/s\"#" \
  "$ROOT/bench/scenarios/open2000.toml" >"$WORK/scenario.toml"

RESULTS="$WORK/results.jsonl"
for round in $(seq 1 "$REPEAT"); do
  for pair in "${BINARIES[@]}"; do
    name="${pair%%=*}" bin="${pair#*=}"
    out="$WORK/out-$name-$round"
    /usr/bin/time -f '%U %S' -o "$WORK/times" taskset -c 0 "$bin" run "$WORK/scenario.toml" \
      --target "http://127.0.0.1:$PORT" --duration "$DURATION" --threads 1 --quiet --out "$out" >/dev/null || true
    python3 - "$name" "$out" "$WORK/times" >>"$RESULTS" <<'PY'
import glob, json, sys
name, out, times = sys.argv[1:4]
summary = json.load(open(glob.glob(out + "/*/summary.json")[0]))
user, system = map(float, open(times).read().split()[-2:])
g, t = summary["generator"], summary["totals"]
print(json.dumps({"name": name, "lag_p50_us": g["lag_us"]["p50"], "lag_p99_us": g["lag_us"]["p99"],
    "latency_p50_us": t["latency_us"]["p50"], "latency_p99_us": t["latency_us"]["p99"],
    "requests": t["requests"], "dropped": g["dropped"], "cpu_s": user + system,
    "duration_s": summary["duration_s"]}))
PY
  done
done

python3 - "$RESULTS" "$RATE" "$DURATION" "$REPEAT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rate, duration, repeat = sys.argv[2:5]
print(f"generator lateness at {rate}/s for {duration}, one thread, median of {repeat}")
print(f"{'binary':<12}{'lag p50 ms':>12}{'lag p99 ms':>12}{'lat p50 ms':>12}{'lat p99 ms':>12}{'requests':>10}{'dropped':>9}{'CPU %':>7}")
for name in dict.fromkeys(r["name"] for r in rows):
    mine = [r for r in rows if r["name"] == name]
    med = lambda k: statistics.median(r[k] for r in mine)
    cpu = statistics.median(r["cpu_s"] / r["duration_s"] * 100 for r in mine)
    print(f"{name:<12}{med('lag_p50_us')/1000:>12.3f}{med('lag_p99_us')/1000:>12.3f}"
          f"{med('latency_p50_us')/1000:>12.3f}{med('latency_p99_us')/1000:>12.3f}"
          f"{med('requests'):>10.0f}{med('dropped'):>9.0f}{cpu:>7.0f}")
PY
