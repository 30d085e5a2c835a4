#!/usr/bin/env bash
# Benchmarks loadgen's HTTP/2 client against its peers (h2load, oha --http2) on the same
# loopback nginx speaking cleartext HTTP/2 by prior knowledge (h2c), in one run, and prints
# requests/s per tool and the ratios. Quote the ratios, not the absolute numbers: these
# machines are shared and noisy. See bench/README.md ("HTTP/2").
#
#   bash bench/h2.sh [--duration 10s] [--streams 64] [--connections 1] [--repeat N]
#                    [--tools h2load,oha,loadgen] [--no-build]
#
# nginx (1 worker) is pinned to core 1 and every load generator to core 0. Every tool gets
# the same concurrent streams over the same number of connections: h2load -c C -m S/C,
# oha --http2 -c C -p S/C, loadgen with S closed-model virtual users on C worker threads
# (loadgen's journeys on one worker share one HTTP/2 connection). Installs what is missing:
# h2load (nghttp2-client) and nginx from Debian, oha from crates.io.
set -euo pipefail

usage() {
  cat >&2 <<'EOF'
usage: bench/h2.sh [options]
  --duration D       each tool's run time: "10s" (default), "30s", "1m"
  --streams N        concurrent requests (HTTP/2 streams) in total, every tool (default 64)
  --connections N    HTTP/2 connections they share, every tool (default 1; must divide
                     --streams; loadgen gets one worker thread per connection)
  --repeat N         run every tool N times, interleaved, and report the median (default 1)
  --tools LIST       comma-separated subset of h2load,oha,loadgen
  --no-build         use the loadgen binary as it is (no cargo build)
EOF
}

DURATION=10s
STREAMS=64
CONNECTIONS=1
REPEAT=1
TOOLS=h2load,oha,loadgen
BUILD=1
while (($#)); do
  case "$1" in
    --duration) DURATION="${2:?}"; shift 2 ;;
    --streams) STREAMS="${2:?}"; shift 2 ;;
    --connections) CONNECTIONS="${2:?}"; shift 2 ;;
    --repeat) REPEAT="${2:?}"; shift 2 ;;
    --tools) TOOLS="${2:?}"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage; exit 2 ;;
  esac
done

say() { printf 'bench: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }

[[ "$STREAMS" =~ ^[1-9][0-9]*$ ]] || die "--streams wants a positive integer, not '$STREAMS'"
[[ "$CONNECTIONS" =~ ^[1-9][0-9]*$ ]] || die "--connections wants a positive integer, not '$CONNECTIONS'"
((STREAMS % CONNECTIONS == 0)) || die "--connections ($CONNECTIONS) must divide --streams ($STREAMS)"
PER_CONN=$((STREAMS / CONNECTIONS))
# nginx's http2_max_concurrent_streams below: more per connection and the peers would queue
# while loadgen opened a further connection; the comparison would no longer be like for like.
((PER_CONN <= 128)) || die "at most 128 streams per connection (nginx's http2_max_concurrent_streams)"
[[ "$REPEAT" =~ ^[1-9][0-9]*$ ]] || die "--repeat wants a positive integer, not '$REPEAT'"
IFS=, read -r -a TOOL_LIST <<<"$TOOLS"
for tool in "${TOOL_LIST[@]}"; do
  case "$tool" in h2load | oha | loadgen) ;; *) die "unknown tool '$tool'" ;; esac
done
wants() { [[ ",$TOOLS," == *",$1,"* ]]; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
LOADGEN_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/loadgen"
OUT_DIR="$ROOT/bench/out"
export PATH="$HOME/.cargo/bin:$PATH"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/loadgen-h2.XXXXXX")"
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
  if wants h2load && ! command -v h2load >/dev/null; then missing+=(nghttp2-client); fi
  [[ -x /usr/bin/time ]] || missing+=(time)
  if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
  command -v h2load >/dev/null && AVAILABLE[h2load]=1

  if wants oha && ! command -v oha >/dev/null; then
    # Another `cargo install oha` may already be under way (bench/run.sh, or by hand): wait.
    local waited=0
    while ! command -v oha >/dev/null && pgrep -f 'cargo install oha' >/dev/null && ((waited < 1800)); do
      ((waited % 60 == 0)) && say "waiting for a running 'cargo install oha' to finish"
      sleep 5
      waited=$((waited + 5))
    done
    if ! command -v oha >/dev/null; then
      say "installing oha from crates.io (cargo install oha --locked)"
      cargo install oha --locked >"$WORK/oha-install.log" 2>&1 || { tail -20 "$WORK/oha-install.log" >&2; say "oha install failed"; }
    fi
  fi
  if command -v oha >/dev/null; then
    # -p (parallel requests per HTTP/2 connection) arrived with oha 1.x; without it oha would
    # send one request at a time per connection and the comparison would be meaningless.
    if oha --help 2>&1 | grep -q -- '--http2' && oha --help 2>&1 | grep -qE '^\s+-p\b'; then
      AVAILABLE[oha]=1
    elif wants oha; then
      say "this oha ($(oha --version 2>&1 | head -1)) has no --http2 -p; oha is left out"
    fi
  fi

  if wants loadgen; then
    if ((BUILD)); then
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
  fi
}

# ------------------------------------------------------------------------------- nginx


# One worker, access log off, cleartext HTTP/2 only on PORT (prior knowledge: this listener
# does not speak HTTP/1.1), 128 concurrent streams per connection, and keepalive_requests /
# keepalive_timeout (which nginx 1.19.7+ applies to HTTP/2 connections too) so high that no
# tool sees a GOAWAY mid-run. stub_status answers on a second, HTTP/1.1 listener of the same
# worker (its counters are the worker's, both listeners together).
write_nginx_conf() {
  local dir="$1"
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  http2_max_concurrent_streams 128;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  default_type text/plain;
  server {
    listen 127.0.0.1:$PORT http2 backlog=4096;
    location = / { return 200 "ok"; }
  }
  server {
    listen 127.0.0.1:$STATUS_PORT;
    location = /nginx_status { stub_status; }
  }
}
EOF
}

start_nginx() {
  PORT="$(free_port)"
  STATUS_PORT="$(free_port)"
  while [[ "$STATUS_PORT" == "$PORT" ]]; do STATUS_PORT="$(free_port)"; done
  mkdir -p "$WORK/nginx"
  write_nginx_conf "$WORK/nginx"
  taskset -c 1 nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" -e "$WORK/nginx/error.log" &
  NGINX_PID=$!
  local _ version
  for _ in $(seq 1 200); do
    if curl -sf -o /dev/null "http://127.0.0.1:$STATUS_PORT/nginx_status"; then
      NGINX_WORKER="$(pgrep -P "$NGINX_PID" | head -1)"
      version="$(curl -s --http2-prior-knowledge -o /dev/null -w '%{http_version}' "$(URL)" || true)"
      [[ "$version" == 2 ]] || die "nginx does not answer h2c prior knowledge on $(URL) (curl saw HTTP/'$version')"
      return
    fi
    kill -0 "$NGINX_PID" 2>/dev/null || break
    sleep 0.05
  done
  cat "$WORK/nginx/error.log" >&2 2>/dev/null || true
  say "nginx did not come up on 127.0.0.1:$PORT"
  exit 3
}

# stub_status as "active accepts requests"; each query is one connection and one request.
nginx_status() {
  curl -sf "http://127.0.0.1:$STATUS_PORT/nginx_status" |
    awk 'NR == 1 {a = $3} NR == 3 {print a, $1, $3}'
}

# CPU seconds the nginx worker has used so far (user + system).

# --------------------------------------------------------------------------- the tools
#
# Each run_<tool> runs the tool once, pinned to core 0, under /usr/bin/time (CPU seconds to
# "$TIMES"), and prints "requests elapsed_seconds errors": successful requests counted by the
# tool itself over the time it measured them in.

URL() { printf 'http://127.0.0.1:%s/' "$PORT"; }

timed() { /usr/bin/time -f '%U %S' -o "$TIMES" taskset -c 0 "$@"; }

run_h2load() {
  # http:// means h2c by prior knowledge for h2load. -t 1: one native thread.
  timed h2load -c "$CONNECTIONS" -m "$PER_CONN" -t 1 -D "$DUR_S" "$(URL)" >"$RAW" 2>&1 || return 1
  python3 - "$RAW" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"finished in ([\d.]+)(us|ms|s|m)\b", text)
t = float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(2)]
m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed", text)
succeeded, failed = int(m.group(1)), int(m.group(2))
codes = [int(n) for n in re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text).groups()]
# "succeeded" means a response came back, whatever its status: non-2xx are errors here. A
# status counted for a stream still open at the deadline is in "status codes" but not in
# "succeeded", so the 2xx are capped at the succeeded.
ok = min(codes[0], succeeded)
print(ok, t, failed + min(sum(codes[1:]), succeeded - ok))
PY
}

run_oha() {
  # --http2 on an http:// URL is h2c by prior knowledge; -c connections, -p concurrent
  # requests on each; --worker-threads 1 like h2load -t 1 and loadgen --threads 1. On HTTP/2
  # oha waits for the requests in flight at the deadline (none are aborted).
  timed oha --http2 -c "$CONNECTIONS" -p "$PER_CONN" -z "$DUR" --worker-threads 1 --no-tui \
    --output-format json "$(URL)" >"$RAW" 2>"$RAW.err" || return 1
  python3 - "$RAW" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
codes = {int(k): v for k, v in (r.get("statusCodeDistribution") or {}).items()}
ok = sum(v for k, v in codes.items() if 200 <= k < 300)
errors = sum(v for k, v in codes.items() if not 200 <= k < 300)
errors += sum(v for k, v in (r.get("errorDistribution") or {}).items() if "deadline" not in k)
print(ok, r["summary"]["total"], errors)
PY
}

run_loadgen() {
  local out="$RAW.d"
  mkdir -p "$out"
  timed "$LOADGEN_BIN" run "$SCENARIO" --target "$(URL)" --threads "$CONNECTIONS" \
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

# bench/scenarios/h2c.toml as it is for 64 streams, else a copy with the virtual users changed.
prepare_scenario() {
  SCENARIO="$ROOT/bench/scenarios/h2c.toml"
  if ((STREAMS != 64)); then
    sed -E "s/^(start_vus|vus) = 64$/\1 = $STREAMS/" "$SCENARIO" >"$WORK/h2c.toml"
    SCENARIO="$WORK/h2c.toml"
  fi
}

# One measurement: appends "tool rep requests elapsed errors cpu_s nginx_cpu_s served
# accepted active_mid loadavg" (served, accepted: nginx's counters over the tool's run, the
# status queries taken out; active_mid: connections open halfway through, the query's own
# taken out).
measure() {
  local tool="$1" rep="$2" line cpu nginx_before nginx_after before after mid load sampler
  local requests elapsed errors
  RAW="$WORK/$tool.$rep.out"
  TIMES="$WORK/$tool.$rep.time"
  load="$(cut -d' ' -f1 /proc/loadavg)"
  before="$(nginx_status)"
  nginx_before="$(nginx_cpu)"
  # Halfway through, how many connections are open (the sampler's query is one of them).
  (sleep "$(awk -v d="$DUR_S" 'BEGIN {print d / 2}')"; nginx_status >"$WORK/mid.$tool.$rep") &
  sampler=$!
  if ! line="$("run_$tool")"; then
    wait "$sampler" 2>/dev/null || true
    say "$tool (run $rep) failed:"
    tail -5 "$RAW" "$RAW.err" 2>/dev/null >&2 || true
    return 0
  fi
  wait "$sampler" 2>/dev/null || true
  nginx_after="$(nginx_cpu)"
  after="$(nginx_status)"
  mid="$(cat "$WORK/mid.$tool.$rep" 2>/dev/null || echo "0 0 0")"
  cpu="$(tail -1 "$TIMES" | awk '{print $1 + $2}')"
  local served accepted active
  read -r served accepted active < <(awk -v b="$before" -v a="$after" -v m="$mid" 'BEGIN {
    split(b, B, " "); split(a, A, " "); split(m, M, " ")
    # the mid-run query and the closing query are one connection and one request each
    print A[3] - B[3] - 2, A[2] - B[2] - 2, M[1] - 1 }')
  printf '%s %s %s %s %s %s %s %s %s\n' "$tool" "$rep" "$line" "$cpu" \
    "$(awk -v a="$nginx_before" -v b="$nginx_after" 'BEGIN {print b - a}')" \
    "$served" "$accepted" "$active" "$load" >>"$WORK/results.txt"
  read -r requests elapsed errors <<<"$line"
  say "$(printf '%-8s run %s: %9.0f req/s  (%s requests in %.2fs, %s errors; generator CPU %ss; %s connection(s) opened, %s open halfway)' \
    "$tool" "$rep" "$(awk -v n="$requests" -v t="$elapsed" 'BEGIN {print (t > 0 ? n / t : 0)}')" \
    "$requests" "$elapsed" "$errors" "$cpu" "$accepted" "$active")"
  sleep 1 # let the closed connections leave TIME_WAIT's way before the next tool
}

# -------------------------------------------------------------------------------- main

ensure_tools
start_nginx
prepare_scenario
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
RUN_TOOLS=()
for tool in "${TOOL_LIST[@]}"; do
  if [[ -n "${AVAILABLE[$tool]:-}" ]]; then RUN_TOOLS+=("$tool"); else say "$tool is not available: skipped"; fi
done
((${#RUN_TOOLS[@]})) || die "nothing to run"
say "nginx (1 worker, h2c, 128 streams per connection) on 127.0.0.1:$PORT pinned to core 1; generators pinned to core 0"
say "$STREAMS concurrent streams over $CONNECTIONS connection(s), $DUR per run, $REPEAT run(s) per tool, interleaved; load average now $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$WORK/results.txt"
for rep in $(seq 1 "$REPEAT"); do
  for tool in "${RUN_TOOLS[@]}"; do measure "$tool" "$rep"; done
done

mkdir -p "$OUT_DIR"
versions="nginx=$(nginx -v 2>&1 | sed 's#.*/##')"
[[ -n "${AVAILABLE[h2load]:-}" ]] && versions+=";h2load=$(h2load --version 2>&1 | head -1 | sed 's#.*/##')"
[[ -n "${AVAILABLE[oha]:-}" ]] && versions+=";oha=$(oha --version | awk '{print $2}')"
[[ -n "${AVAILABLE[loadgen]:-}" ]] && versions+=";loadgen=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$ROOT" && git diff --quiet -- src 2>/dev/null || echo +dirty)"

python3 - "$WORK/results.txt" "$OUT_DIR/$STAMP-h2.json" "$STREAMS" "$CONNECTIONS" "$DUR_S" "$REPEAT" "$versions" <<'PY'
import json, os, statistics, sys
from datetime import datetime, timezone

results_path, out_path, streams, connections, duration_s, repeat, versions = sys.argv[1:]
runs = []
for line in open(results_path):
    tool, rep, requests, elapsed, errors, cpu, nginx_cpu, served, accepted, active, load = line.split()
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
        # a little above 1 (requests cut off at the deadline), never below.
        "served_over_counted": int(served) / (requests + int(errors)) if requests + int(errors) else 0.0,
        # connections nginx accepted while the tool ran, and those open halfway through
        "connections_accepted": int(accepted),
        "connections_open_mid_run": int(active),
        "loadavg_before": float(load),
    })

order = ["h2load", "oha", "loadgen"]
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
        "connections_accepted": max(r["connections_accepted"] for r in mine),
        "connections_open_mid_run": max(r["connections_open_mid_run"] for r in mine),
    }

ratio_defs = [("loadgen/h2load", "loadgen", "h2load"), ("loadgen/oha", "loadgen", "oha"), ("oha/h2load", "oha", "h2load")]
ratios = {}
for name, a, b in ratio_defs:
    if a in tools and b in tools and tools[b]["rps"] > 0:
        entry = {"rps": tools[a]["rps"] / tools[b]["rps"]}
        if tools[b]["requests_per_cpu_s"] > 0:
            entry["per_cpu_s"] = tools[a]["requests_per_cpu_s"] / tools[b]["requests_per_cpu_s"]
        ratios[name] = entry

result = {
    "bench": "loadgen bench/h2.sh",
    "at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "setup": {
        "protocol": "h2c (HTTP/2 by prior knowledge, cleartext)",
        "streams": int(streams), "connections": int(connections),
        "duration_s": int(duration_s), "repeat": int(repeat),
        "target": "nginx, 1 worker, http2_max_concurrent_streams 128, return 200, loopback, pinned to core 1",
        "generators": f"pinned to core 0 (h2load -c {connections} -m {int(streams) // int(connections)} -t 1, "
                      f"oha --http2 -c {connections} -p {int(streams) // int(connections)} --worker-threads 1, "
                      f"loadgen --threads {connections} with {streams} virtual users)",
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
print(f"{'tool':<9}{'req/s':>10}{'req/CPU-s':>11}{'gen CPU':>9}{'nginx CPU':>11}{'served/counted':>16}"
      f"{'conns':>7}{'open':>6}{'errors':>8}{'runs':>6}")
for tool, t in tools.items():
    print(f"{tool:<9}{t['rps']:>10.0f}{t['requests_per_cpu_s']:>11.0f}{t['generator_cpu_pct']:>8.0f}%"
          f"{t['nginx_cpu_pct']:>10.0f}%{t['served_over_counted']:>16.4f}"
          f"{t['connections_accepted']:>7}{t['connections_open_mid_run']:>6}{t['errors']:>8}{t['runs']:>6}")
print()
print(f"{'ratio':<16}{'req/s':>7}{'req/CPU-s':>11}")
for name, r in ratios.items():
    per_cpu = f"{r['per_cpu_s']:>11.2f}" if "per_cpu_s" in r else f"{'':>11}"
    print(f"{name:<16}{r['rps']:>7.2f}{per_cpu}")
expected = int(connections)
odd = [t for t, v in tools.items() if v["connections_open_mid_run"] != expected]
if odd:
    print(f"\nnote: expected {expected} connection(s) open halfway through; "
          + ", ".join(f"{t} had {tools[t]['connections_open_mid_run']}" for t in odd))
loads = [r["loadavg_before"] for r in runs]
if loads and max(loads) > 0.5:
    print(f"\nnote: load average before the runs was up to {max(loads):.2f} on {os.cpu_count()} cores: "
          "other work shared the cores, so the absolute numbers are low; compare ratios.")
print(f"\n(written to {out_path})")
PY
