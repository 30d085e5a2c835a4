#!/usr/bin/env bash
# An A/B of two loadgen binaries, interleaved on one nginx: requests per CPU-second of each
# (one worker thread, pinned to core 0; nginx on core 1), for the plain and the mix scenario,
# round after round, and the medians. Two runs of bench/run.sh, one per binary, drift apart
# on a shared machine (wrk, unchanged, moved 13 % between two such runs minutes apart); here
# A and B alternate within each round, so both see the same machine. See bench/README.md.
#
#   bash bench/ab.sh A_BINARY B_BINARY [--rounds N] [--duration 8s]
set -euo pipefail

die() { echo "bench/ab.sh: $*" >&2; exit 2; }
say() { echo "ab: $*" >&2; }

(($# >= 2)) || die "usage: bench/ab.sh A_BINARY B_BINARY [--rounds N] [--duration 8s]"
A="$(realpath "$1")"
B="$(realpath "$2")"
shift 2
ROUNDS=5
DURATION=8s
while (($#)); do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    *) die "unknown option '$1'" ;;
  esac
done
[[ -x "$A" && -x "$B" ]] || die "both binaries must be executable files"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "--rounds wants a whole number"

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d)"
NGINX_PID=""
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
trap cleanup EXIT

PORT="$(free_port)"
GZIP_PORT="$(free_port)"
mkdir -p "$WORK/nginx"
sed -e "s#@DIR@#$WORK/nginx#g" -e "s#@PORT@#$PORT#g" -e "s#@GZIP_PORT@#$GZIP_PORT#g" \
  "$ROOT/bench/nginx.conf.template" >"$WORK/nginx/nginx.conf"
taskset -c 1 nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" -e "$WORK/nginx/error.log" &
NGINX_PID=$!
for _ in $(seq 1 200); do
  curl -sf -o /dev/null "http://127.0.0.1:$PORT/" && break
  kill -0 "$NGINX_PID" 2>/dev/null || die "nginx did not start (see $WORK/nginx/error.log)"
  sleep 0.05
done
say "nginx on 127.0.0.1:$PORT (core 1); A = $A; B = $B; $ROUNDS rounds of $DUR each"

# One run: "<side> <scenario> <requests> <requests per CPU-second>".
run() {
  local side="$1" binary="$2" scenario="$3" out="$WORK/$1-$3-$4"
  mkdir -p "$out"
  /usr/bin/time -f '%U %S' -o "$out/time" taskset -c 0 "$binary" run \
    "$ROOT/bench/scenarios/$scenario.toml" --target "http://127.0.0.1:$PORT/" --threads 1 \
    --duration "$DUR" --quiet --out "$out" >"$out/log" 2>&1 || { cat "$out/log" >&2; die "$side failed"; }
  python3 - "$out" "$side" "$scenario" <<'PY'
import glob, json, sys
out, side, scenario = sys.argv[1:4]
requests = json.load(open(glob.glob(out + "/*/summary.json")[0]))["totals"]["requests"]
user, system = map(float, open(out + "/time").read().split()[-2:])
print(side, scenario, requests, round(requests / (user + system)))
PY
}

for round in $(seq 1 "$ROUNDS"); do
  for scenario in plain mix; do
    run A "$A" "$scenario" "$round"
    run B "$B" "$scenario" "$round"
  done
done | tee "$WORK/results" >&2

python3 - "$WORK/results" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    side, scenario, _, per_cpu = line.split()
    runs[(side, scenario)].append(int(per_cpu))
median = {key: statistics.median(values) for key, values in runs.items()}
print(f"{'':14}{'A req/CPU-s':>14}{'B req/CPU-s':>14}{'B/A':>8}")
for scenario in ("plain", "mix"):
    a, b = median[("A", scenario)], median[("B", scenario)]
    print(f"{scenario:14}{a:>14.0f}{b:>14.0f}{b / a:>8.3f}")
ratio = {side: median[(side, "mix")] / median[(side, "plain")] for side in "AB"}
print(f"{'mix/plain':14}{ratio['A']:>14.3f}{ratio['B']:>14.3f}{ratio['B'] / ratio['A']:>8.3f}")
PY
