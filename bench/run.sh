#!/usr/bin/env bash
# Benchmarks loadgen against its peers (wrk, oha, Goose) on the same loopback nginx, in one
# run, and prints requests/s per tool and the ratios. Quote the ratios, not the absolute
# numbers: these machines are shared and noisy. See bench/README.md.
#
#   bash bench/run.sh [--duration 10s] [--connections 64] [--repeat N]
#                     [--tools wrk,oha,goose,loadgen,loadgen-mix,loadgen-mix-gzip]
#                     [--no-build] [--loadgen PATH] [--perf]
#
# nginx (1 worker) is pinned to core 1 and every load generator to core 0, one thread each.
# Installs what is missing (for the tools asked for): wrk and nginx from Debian, oha from
# crates.io, Goose built from crates.io in bench/goose (a bench-only crate outside loadgen's
# workspace).
set -euo pipefail

usage() {
  cat >&2 <<'EOF'
usage: bench/run.sh [options]
  --duration D       each tool's run time: "10s" (default), "30s", "1m"
  --connections N    connections / virtual users for every tool (default 64)
  --repeat N         run every tool N times, interleaved, and report the median (default 1)
  --tools LIST       comma-separated subset of wrk,oha,goose,loadgen,loadgen-mix,
                     loadgen-mix-gzip (default: all)
  --no-build         use the loadgen and Goose binaries as they are (no cargo build)
  --loadgen PATH     run this loadgen binary (no cargo build of loadgen), e.g. one built
                     from another commit for an A/B
  --perf             afterwards, profile loadgen (plain) and oha with `perf record`
                     and write the top symbols to bench/out/<stamp>-perf-<tool>.txt
EOF
}

DURATION=10s
CONNECTIONS=64
REPEAT=1
TOOLS=wrk,oha,goose,loadgen,loadgen-mix,loadgen-mix-gzip
BUILD=1
LOADGEN_GIVEN=""
PERF=0
while (($#)); do
  case "$1" in
    --duration) DURATION="${2:?}"; shift 2 ;;
    --connections) CONNECTIONS="${2:?}"; shift 2 ;;
    --repeat) REPEAT="${2:?}"; shift 2 ;;
    --tools) TOOLS="${2:?}"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --loadgen) LOADGEN_GIVEN="${2:?}"; shift 2 ;;
    --perf) PERF=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage; exit 2 ;;
  esac
done

say() { printf 'bench: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }

[[ "$CONNECTIONS" =~ ^[1-9][0-9]*$ ]] || die "--connections wants a positive integer, not '$CONNECTIONS'"
[[ "$REPEAT" =~ ^[1-9][0-9]*$ ]] || die "--repeat wants a positive integer, not '$REPEAT'"
IFS=, read -r -a TOOL_LIST <<<"$TOOLS"
for tool in "${TOOL_LIST[@]}"; do
  case "$tool" in wrk | oha | goose | loadgen | loadgen-mix | loadgen-mix-gzip) ;; *) die "unknown tool '$tool'" ;; esac
done
# Whether TOOL is among --tools.
wants() { [[ ",$TOOLS," == *",$1,"* ]]; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
LOADGEN_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/loadgen"
if [[ -n "$LOADGEN_GIVEN" ]]; then
  [[ -x "$LOADGEN_GIVEN" ]] || die "--loadgen: '$LOADGEN_GIVEN' is not an executable"
  LOADGEN_BIN="$(cd "$(dirname "$LOADGEN_GIVEN")" && pwd)/$(basename "$LOADGEN_GIVEN")"
fi
GOOSE_DIR="$ROOT/bench/goose"
GOOSE_BIN="$GOOSE_DIR/target/release/goose-bench"
OUT_DIR="$ROOT/bench/out"
export PATH="$HOME/.cargo/bin:$PATH"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/loadgen-bench.XXXXXX")"
NGINX_PID=""
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------- installs


declare -A AVAILABLE=()

ensure_tools() {
  local missing=() pair
  for pair in nginx:nginx taskset:util-linux python3:python3 curl:curl; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
  done
  if wants wrk && ! command -v wrk >/dev/null; then missing+=(wrk); fi
  [[ -x /usr/bin/time ]] || missing+=(time)
  if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
  command -v wrk >/dev/null && AVAILABLE[wrk]=1

  if wants oha && ! command -v oha >/dev/null; then
    # Another `cargo install oha` may already be under way (e.g. started by hand): wait for it.
    local waited=0
    while ! command -v oha >/dev/null && pgrep -f 'cargo install oha' >/dev/null && ((waited < 1800)); do
      ((waited % 60 == 0)) && say "waiting for a running 'cargo install oha' to finish"
      sleep 5
      waited=$((waited + 5))
    done
  fi
  if wants oha && ! command -v oha >/dev/null; then
    say "installing oha from crates.io (cargo install oha --locked)"
    cargo install oha --locked >"$WORK/oha-install.log" 2>&1 || { tail -20 "$WORK/oha-install.log" >&2; say "oha install failed"; }
  fi
  command -v oha >/dev/null && AVAILABLE[oha]=1

  if ((BUILD)) && wants goose; then
    say "building the Goose bench (bench/goose, release)"
    if (cd "$GOOSE_DIR" && cargo build --release --locked --target-dir "$GOOSE_DIR/target") >"$WORK/goose-build.log" 2>&1; then
      :
    else
      tail -20 "$WORK/goose-build.log" >&2
      say "Goose bench build failed; Goose is left out"
    fi
  fi
  [[ -x "$GOOSE_BIN" ]] && AVAILABLE[goose]=1

  if ((BUILD)) && [[ -z "$LOADGEN_GIVEN" ]]; then
    say "building loadgen (cargo build --release -p loadgen)"
    if (cd "$ROOT" && cargo build --release -p loadgen) >"$WORK/loadgen-build.log" 2>&1; then
      AVAILABLE[loadgen]=1
    else
      grep -E '^(error|warning: unused)' -A6 "$WORK/loadgen-build.log" | head -40 >&2 || true
      say "loadgen does not build right now; loadgen is left out (--no-build runs the last binary)"
    fi
  elif [[ -x "$LOADGEN_BIN" ]]; then
    AVAILABLE[loadgen]=1
  fi
  if [[ -n "${AVAILABLE[loadgen]:-}" ]]; then AVAILABLE[loadgen-mix]=1 AVAILABLE[loadgen-mix-gzip]=1; fi
}

# ------------------------------------------------------------------------------- nginx


start_nginx() {
  PORT="$(free_port)"
  GZIP_PORT="$(free_port)"
  [[ "$GZIP_PORT" != "$PORT" ]] || GZIP_PORT="$(free_port)"
  mkdir -p "$WORK/nginx"
  sed -e "s#@DIR@#$WORK/nginx#g" -e "s#@PORT@#$PORT#g" -e "s#@GZIP_PORT@#$GZIP_PORT#g" \
    "$ROOT/bench/nginx.conf.template" >"$WORK/nginx/nginx.conf"
  taskset -c 1 nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" -e "$WORK/nginx/error.log" &
  NGINX_PID=$!
  local _
  for _ in $(seq 1 200); do
    if curl -sf -o /dev/null "http://127.0.0.1:$PORT/"; then
      NGINX_WORKER="$(pgrep -P "$NGINX_PID" | head -1)"
      curl -sf -o /dev/null -X POST -H 'content-type: application/json' -d '{}' "http://127.0.0.1:$PORT/api/members" ||
        die "nginx does not answer the mix's locations (see bench/nginx.conf.template)"
      curl -sf -o /dev/null -D - -H 'accept-encoding: gzip' "http://127.0.0.1:$GZIP_PORT/api/members/1" |
        grep -qi '^content-encoding: gzip' ||
        die "nginx's gzip server does not gzip the mix's answers (see bench/nginx.conf.template)"
      return
    fi
    kill -0 "$NGINX_PID" 2>/dev/null || break
    sleep 0.05
  done
  cat "$WORK/nginx/error.log" >&2 2>/dev/null || true
  say "nginx did not come up on 127.0.0.1:$PORT"
  exit 3
}

# Requests nginx has served so far (stub_status), this query included.
nginx_requests() {
  curl -sf "http://127.0.0.1:$PORT/nginx_status" | awk 'NR == 3 {print $3}'
}

# CPU seconds the nginx worker has used so far (user + system).

# --------------------------------------------------------------------------- the tools
#
# Each run_<tool> runs the tool once, pinned to core 0, under /usr/bin/time (CPU seconds to
# "$TIMES"), and prints "requests elapsed_seconds errors": successful requests counted by the
# tool itself over the time it measured them in.

URL() { printf 'http://127.0.0.1:%s/' "$PORT"; }
GZIP_URL() { printf 'http://127.0.0.1:%s/' "$GZIP_PORT"; }

timed() { /usr/bin/time -f '%U %S' -o "$TIMES" taskset -c 0 "$@"; }

run_wrk() {
  timed wrk -t1 -c"$CONNECTIONS" -d"$DUR" --latency "$(URL)" >"$RAW" || return 1
  python3 - "$RAW" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", text)
n, t, unit = int(m.group(1)), float(m.group(2)), m.group(3)
t *= {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]
errors = 0
m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if m:
    errors += int(m.group(1))
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
if m:
    errors += sum(int(g) for g in m.groups())
print(n - errors, t, errors)
PY
}

run_oha() {
  # --worker-threads 1: oha's tokio runtime gets one thread, like wrk -t1 and loadgen --threads 1.
  timed oha -c "$CONNECTIONS" -z "$DUR" --worker-threads 1 --no-tui --output-format json "$(URL)" >"$RAW" 2>"$RAW.err" || return 1
  python3 - "$RAW" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
codes = {int(k): v for k, v in (r.get("statusCodeDistribution") or {}).items()}
ok = sum(v for k, v in codes.items() if 200 <= k < 300)
errors = sum(v for k, v in codes.items() if not 200 <= k < 300)
# Requests still in flight when the deadline hits are cut off by oha: not errors.
errors += sum(v for k, v in (r.get("errorDistribution") or {}).items() if "deadline" not in k)
print(ok, r["summary"]["total"], errors)
PY
}

run_goose() {
  # All users start at once (a high --increase-rate) and the metrics are not reset after the
  # ramp, so the counts cover the same span as the CPU time; elapsed comes from Goose's own
  # history (start of the ramp to the start of the ramp-down).
  timed "$GOOSE_BIN" --host "$(URL)" --users "$CONNECTIONS" --increase-rate "$((CONNECTIONS * 100))" \
    --run-time "$DUR" --no-reset-metrics --quiet --report-file "$RAW.json" >"$RAW" 2>&1 || return 1
  python3 - "$RAW.json" <<'PY'
import json, sys
from datetime import datetime
r = json.load(open(sys.argv[1]))
raw = r["raw_metrics"]
ok = sum(v["success_count"] for v in raw["requests"].values())
errors = sum(v["fail_count"] for v in raw["requests"].values())
def ts(s):
    # nanosecond timestamps: keep microseconds for fromisoformat
    head, _, frac = s.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00")
history = raw["history"]
start = ts(history[0]["timestamp"])
end = next((ts(h["timestamp"]) for h in history if h["action"] == "Decreasing"), ts(history[-1]["timestamp"]))
print(ok, (end - start).total_seconds(), errors)
PY
}

run_loadgen_scenario() {
  local scenario="$1" url="${2:-$(URL)}" out="$RAW.d"
  mkdir -p "$out"
  timed "$LOADGEN_BIN" run "$ROOT/bench/scenarios/$scenario.toml" --target "$url" --threads 1 \
    --duration "$DUR" --quiet --out "$out" >"$RAW" 2>&1 || { cat "$RAW" >&2; return 1; }
  python3 - "$out" <<'PY'
import glob, json, sys
found = glob.glob(sys.argv[1] + "/*/summary.json")
if not found:
    sys.exit("loadgen wrote no <out>/<timestamp>-<name>/summary.json")
t = json.load(open(found[0]))["totals"]
requests, rps, errors = int(t["requests"]), float(t["rps"]), int(t.get("errors", 0))
# The contract is totals.rps; elapsed is derived so that requests/elapsed == totals.rps.
print(requests - errors, requests / rps if rps else 0.0, errors)
PY
}
run_loadgen() { run_loadgen_scenario plain; }
run_loadgen_mix() { run_loadgen_scenario mix; }
run_loadgen_mix_gzip() { run_loadgen_scenario mix-gzip "$(GZIP_URL)"; }

# One measurement: appends
# "tool rep requests elapsed errors cpu_s nginx_cpu_s nginx_requests loadavg".
measure() {
  local tool="$1" rep="$2" line cpu nginx_before nginx_after served_before served_after load
  local requests elapsed errors
  RAW="$WORK/$tool.$rep.out"
  TIMES="$WORK/$tool.$rep.time"
  load="$(cut -d' ' -f1 /proc/loadavg)"
  served_before="$(nginx_requests)"
  nginx_before="$(nginx_cpu)"
  if ! line="$("run_${tool//-/_}")"; then
    say "$tool (run $rep) failed:"
    tail -5 "$RAW" "$RAW.err" 2>/dev/null >&2 || true
    return 0
  fi
  nginx_after="$(nginx_cpu)"
  served_after="$(nginx_requests)"
  cpu="$(tail -1 "$TIMES" | awk '{print $1 + $2}')"
  printf '%s %s %s %s %s %s %s\n' "$tool" "$rep" "$line" "$cpu" \
    "$(awk -v a="$nginx_before" -v b="$nginx_after" 'BEGIN {print b - a}')" \
    "$((served_after - served_before - 1))" "$load" >>"$WORK/results.txt"
  read -r requests elapsed errors <<<"$line"
  say "$(printf '%-16s run %s: %9.0f req/s  (%s requests in %.2fs, %s errors; generator CPU %ss)' \
    "$tool" "$rep" "$(awk -v n="$requests" -v t="$elapsed" 'BEGIN {print (t > 0 ? n / t : 0)}')" \
    "$requests" "$elapsed" "$errors" "$cpu")"
  sleep 1 # let the closed connections leave TIME_WAIT's way before the next tool
}

profile() {
  command -v perf >/dev/null || { say "--perf: perf is not installed (apt-get install linux-perf)"; return 0; }
  local tool="$1" data="$WORK/perf.$1.data" report="$OUT_DIR/$STAMP-perf-$1.txt"
  RAW="$WORK/perf.$tool.out"
  TIMES="$WORK/perf.$tool.time"
  say "profiling $tool with perf record"
  case "$tool" in
    loadgen) perf record -q -F 999 -o "$data" -- taskset -c 0 "$LOADGEN_BIN" run "$ROOT/bench/scenarios/plain.toml" \
      --target "$(URL)" --threads 1 --duration "$DUR" --quiet --out "$WORK/perf-out" >/dev/null 2>&1 ;;
    oha) perf record -q -F 999 -o "$data" -- taskset -c 0 oha -c "$CONNECTIONS" -z "$DUR" --worker-threads 1 \
      --no-tui --output-format quiet "$(URL)" >/dev/null 2>&1 ;;
  esac || { say "perf record failed (perf_event_paranoid?)"; return 0; }
  {
    echo "# perf report --no-children --sort dso,symbol ($tool, $CONNECTIONS connections, $DUR)"
    perf report -q -i "$data" --no-children --sort dso,symbol --percent-limit 0.5 2>/dev/null | head -60
    echo
    echo "# by dso"
    perf report -q -i "$data" --no-children --sort dso 2>/dev/null | head -15
  } | sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//; s/[[:space:]]+$//' >"$report"
  say "wrote $report"
}

# -------------------------------------------------------------------------------- main

ensure_tools
start_nginx
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
RUN_TOOLS=()
for tool in "${TOOL_LIST[@]}"; do
  if [[ -n "${AVAILABLE[$tool]:-}" ]]; then RUN_TOOLS+=("$tool"); else say "$tool is not available: skipped"; fi
done
((${#RUN_TOOLS[@]})) || die "nothing to run"
say "nginx (1 worker) on 127.0.0.1:$PORT pinned to core 1; generators pinned to core 0, one thread each"
say "$CONNECTIONS connections, keep-alive, $DUR per run, $REPEAT run(s) per tool, interleaved; load average now $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$WORK/results.txt"
for rep in $(seq 1 "$REPEAT"); do
  for tool in "${RUN_TOOLS[@]}"; do measure "$tool" "$rep"; done
done

mkdir -p "$OUT_DIR"
versions="nginx=$(nginx -v 2>&1 | sed 's#.*/##')"
[[ -n "${AVAILABLE[wrk]:-}" ]] && versions+=";wrk=$( (wrk --version 2>&1 || true) | head -1 | awk '{print $2}')"
[[ -n "${AVAILABLE[oha]:-}" ]] && versions+=";oha=$(oha --version | awk '{print $2}')"
[[ -n "${AVAILABLE[goose]:-}" ]] && versions+=";goose=$(awk '/^name = "goose"$/ {getline; gsub(/[^0-9.]/, ""); print}' "$GOOSE_DIR/Cargo.lock")"
if [[ -n "$LOADGEN_GIVEN" ]]; then
  versions+=";loadgen=$LOADGEN_BIN"
elif [[ -n "${AVAILABLE[loadgen]:-}" ]]; then
  versions+=";loadgen=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$ROOT" && git diff --quiet -- src 2>/dev/null || echo +dirty)"
fi

python3 - "$WORK/results.txt" "$OUT_DIR/$STAMP.json" "$CONNECTIONS" "$DUR_S" "$REPEAT" "$versions" <<'PY'
import json, os, statistics, sys
from datetime import datetime, timezone

results_path, out_path, connections, duration_s, repeat, versions = sys.argv[1:]
runs = []
for line in open(results_path):
    tool, rep, requests, elapsed, errors, cpu, nginx_cpu, served, load = line.split()
    requests, elapsed, cpu, nginx_cpu = int(requests), float(elapsed), float(cpu), float(nginx_cpu)
    runs.append({
        "tool": tool, "run": int(rep), "requests": requests, "errors": int(errors),
        "elapsed_s": round(elapsed, 3),
        "rps": requests / elapsed if elapsed > 0 else 0.0,
        "generator_cpu_s": cpu,
        "requests_per_cpu_s": requests / cpu if cpu > 0 else 0.0,
        "generator_cpu_pct": 100.0 * cpu / elapsed if elapsed > 0 else 0.0,
        "nginx_cpu_pct": 100.0 * nginx_cpu / elapsed if elapsed > 0 else 0.0,
        # what nginx served while the tool ran (stub_status) over what the tool counted;
        # a little above 1 (requests cut off at the deadline, warm-up), never below.
        "served_over_counted": int(served) / (requests + int(errors)) if requests + int(errors) else 0.0,
        "loadavg_before": float(load),
    })

order = ["wrk", "oha", "goose", "loadgen", "loadgen-mix", "loadgen-mix-gzip"]
tools = {}
for tool in order:
    mine = [r for r in runs if r["tool"] == tool]
    if not mine:
        continue
    med = lambda key: statistics.median(r[key] for r in mine)
    tools[tool] = {
        "runs": len(mine), "rps": med("rps"), "requests_per_cpu_s": med("requests_per_cpu_s"),
        "generator_cpu_pct": med("generator_cpu_pct"), "nginx_cpu_pct": med("nginx_cpu_pct"),
        "errors": sum(r["errors"] for r in mine),
        "served_over_counted": med("served_over_counted"),
    }

ratio_defs = [
    ("loadgen/oha", "loadgen", "oha", ">= 1.0"),
    ("loadgen/wrk", "loadgen", "wrk", ">= 0.8"),
    ("loadgen-mix/loadgen", "loadgen-mix", "loadgen", ">= 0.5"),
    ("loadgen-mix-gzip/loadgen", "loadgen-mix-gzip", "loadgen", None),
    ("goose/loadgen", "goose", "loadgen", None),
    ("oha/wrk", "oha", "wrk", None),
    ("goose/oha", "goose", "oha", None),
]
ratios = {}
for name, a, b, goal in ratio_defs:
    if a in tools and b in tools and tools[b]["rps"] > 0:
        entry = {"rps": tools[a]["rps"] / tools[b]["rps"]}
        if tools[b]["requests_per_cpu_s"] > 0:
            entry["per_cpu_s"] = tools[a]["requests_per_cpu_s"] / tools[b]["requests_per_cpu_s"]
        if goal:
            entry["goal"] = goal
            entry["met"] = entry["rps"] >= float(goal.split()[1])
        ratios[name] = entry

result = {
    "bench": "loadgen bench/run.sh",
    "at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "setup": {
        "connections": int(connections), "duration_s": int(duration_s), "repeat": int(repeat),
        "target": "nginx, 1 worker, return 200, loopback, pinned to core 1",
        "generators": "pinned to core 0, one thread each (wrk -t1, oha --worker-threads 1, loadgen --threads 1, Goose: taskset only)",
        "cores": os.cpu_count(),
        "versions": dict(v.split("=", 1) for v in versions.split(";") if "=" in v),
    },
    "tools": tools,
    "ratios": ratios,
    "runs": runs,
}
with open(out_path, "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")

print()
print(f"{'tool':<17}{'req/s':>10}{'req/CPU-s':>11}{'gen CPU':>9}{'nginx CPU':>11}{'served/counted':>16}{'errors':>8}{'runs':>6}")
for tool, t in tools.items():
    print(f"{tool:<17}{t['rps']:>10.0f}{t['requests_per_cpu_s']:>11.0f}{t['generator_cpu_pct']:>8.0f}%"
          f"{t['nginx_cpu_pct']:>10.0f}%{t['served_over_counted']:>16.4f}{t['errors']:>8}{t['runs']:>6}")
print()
print(f"{'ratio':<26}{'req/s':>7}{'req/CPU-s':>11}  goal")
for name, r in ratios.items():
    goal = ""
    if "goal" in r:
        goal = f"{r['goal']}  {'met' if r['met'] else 'NOT met'}"
    per_cpu = f"{r['per_cpu_s']:>11.2f}" if "per_cpu_s" in r else f"{'':>11}"
    print(f"{name:<26}{r['rps']:>7.2f}{per_cpu}  {goal}")
loads = [r["loadavg_before"] for r in runs]
if loads and max(loads) > 0.5:
    print(f"\nnote: load average before the runs was up to {max(loads):.2f} on {os.cpu_count()} cores: "
          "other work shared the cores, so the absolute numbers are low; compare ratios.")
print(f"\n(written to {out_path})")
PY

if ((PERF)); then
  for tool in loadgen oha; do
    if [[ -n "${AVAILABLE[$tool]:-}" ]]; then profile "$tool"; fi
  done
fi
