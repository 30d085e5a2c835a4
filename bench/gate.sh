#!/usr/bin/env bash
# Does the nightly gate flap on an unchanged platform, and does it catch real degradations?
#
# Brings the local reference stack up once (docker/local/stack.sh) and runs the nightly
# gate's scenario the way docker/ci/nightly.sh does (scenarios/soak.toml, the CI policy,
# plain HTTP/1.1 through nginx) N times clean, then once under each of three degradations:
#
#   backend  backend-3 stopped for the whole run (SIGTERM; started again afterwards)
#   latency  +5 ms each way on the Postgres link, through the stack's fault proxy
#   resets   3 s of connection resets on that link, 60 s into the run
#
# Then it compares, with this loadgen's `compare`:
#   - every ordered pair of clean runs (N·(N−1) comparisons): each exit 1 is a false alarm;
#   - each clean run from the fourth on against the three before it as several baselines
#     (what the nightly gate does once it keeps three nights);
#   - each degraded run against every clean run: caught when it exits 1, with the rows.
# With --old-loadgen PATH the same pairs go through that loadgen's `compare` too (a build
# of an earlier commit, for contrast; see bench/README.md).
#
#   bash bench/gate.sh                       # 10 clean runs of 2 minutes, build first
#   bash bench/gate.sh --runs 4 --duration 30s --no-build
#   bash bench/gate.sh --old-loadgen /tmp/old-rel/release/loadgen
#
# Everything goes to bench/out/gate-<timestamp>/ (the run directories, each comparison's
# comparison.json, and gate.json with the figures); the table is printed at the end.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="$REPO_ROOT/docker/local/stack.sh"
say() { printf '\n== %s\n' "$*" >&2; }
die() { echo "gate.sh: $*" >&2; exit 2; }

RUNS=10
DURATION=2m
BUILD=1
OLD=""
DEGRADATIONS=(backend latency resets)
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS="${2:?}"; shift 2 ;;
    --duration) DURATION="${2:?}"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --old-loadgen) OLD="${2:?}"; shift 2 ;;
    --degradations) IFS=, read -r -a DEGRADATIONS <<<"${2:?}"; shift 2 ;;
    -h|--help) sed -n '2,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ && "$RUNS" -ge 2 ]] || die "--runs wants a whole number of at least 2"
[[ -z "$OLD" || -x "$OLD" ]] || die "--old-loadgen $OLD is not an executable"

TARGET="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
[[ "$TARGET" == /* ]] || TARGET="$REPO_ROOT/$TARGET"
LOADGEN="$TARGET/release/loadgen"
if ((BUILD)); then
  say "building loadgen and platform-backend (release)"
  (cd "$REPO_ROOT" && cargo build --release -p loadgen -p platform-backend)
fi
[[ -x "$LOADGEN" ]] || die "$LOADGEN not found (drop --no-build)"

OUT="$REPO_ROOT/bench/out/gate-$(date -u +%Y%m%dT%H%M%SZ)"
STATE_DIR="$(mktemp -d)"
CONTROL=""
mkdir -p "$OUT"/{clean,degraded,compare}
cleanup() {
  # Never leave a fault set on the link, whatever ended the script.
  [[ -z "$CONTROL" ]] || curl -s -o /dev/null -X DELETE "$CONTROL/fault" || true
  "$STACK" down --state-dir "$STATE_DIR" >/dev/null 2>&1 || true
  rm -rf "$STATE_DIR"
}
trap cleanup EXIT
say "starting the local stack"
PLATFORM_BACKEND_BIN="$TARGET/release/platform-backend" LOADGEN_BIN="$LOADGEN" \
  "$STACK" up --state-dir "$STATE_DIR" >&2
state() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): v = v[int(k)] if k.isdigit() else v[k]
print(v)' "$STATE_DIR/state.json" "$1"; }
HTTP_URL="$(state http_url)"
CONTROL="$(state proxies.0.control)"

# run DIR NAME: one nightly run; prints its exit code. The run directory is DIR/NAME.
run() {
  local code=0 dir_file="$1/$2.dir"
  (cd "$REPO_ROOT" && "$LOADGEN" run scenarios/soak.toml --policy docker/ci/policy.toml \
    --duration "$DURATION" --target "$HTTP_URL" --out "$1" --quiet \
    --run-dir-file "$dir_file") >/dev/null 2>"$1/$2.stderr" || code=$?
  [[ -s "$dir_file" ]] || die "run $2 wrote no run directory (exit $code): $(cat "$1/$2.stderr")"
  mv "$(cat "$dir_file")" "$1/$2"
  rm -f "$dir_file"
  echo "$code"
}

declare -A EXIT_CODES
for i in $(seq 1 "$RUNS"); do
  say "clean run $i of $RUNS ($DURATION)"
  EXIT_CODES["clean-$i"]="$(run "$OUT/clean" "$i")"
done

backend_pid() { state "backends.2.pid"; }
for d in "${DEGRADATIONS[@]}"; do
  say "degraded run: $d"
  case "$d" in
    backend)
      kill -TERM "$(backend_pid)"
      EXIT_CODES["$d"]="$(run "$OUT/degraded" "$d")"
      "$STACK" start-backend backend-3 --state-dir "$STATE_DIR" >&2 ;;
    latency)
      curl -sf -o /dev/null -X PUT -H 'content-type: application/json' \
        -d '{"kind": "latency", "delay_ms": 5, "direction": "both"}' "$CONTROL/fault"
      EXIT_CODES["$d"]="$(run "$OUT/degraded" "$d")"
      curl -sf -o /dev/null -X DELETE "$CONTROL/fault" ;;
    resets)
      (sleep 60
       curl -sf -o /dev/null -X PUT -H 'content-type: application/json' \
         -d '{"kind": "reset"}' "$CONTROL/fault"
       sleep 3
       curl -sf -o /dev/null -X DELETE "$CONTROL/fault") &
      EXIT_CODES["$d"]="$(run "$OUT/degraded" "$d")"
      wait ;;
    *) die "unknown degradation $d (backend, latency, resets)" ;;
  esac
done

# compare TOOL NAME BASE... CURRENT: one comparison into compare/TOOL/NAME; prints its exit.
compare() {
  local tool="$1" name="$2" bin="$LOADGEN" code=0; shift 2
  [[ "$tool" == new ]] || bin="$OLD"
  mkdir -p "$OUT/compare/$tool/$name"
  "$bin" compare "$@" --out "$OUT/compare/$tool/$name" >"$OUT/compare/$tool/$name/table.txt" 2>&1 || code=$?
  echo "$code"
}

TOOLS=(new)
[[ -z "$OLD" ]] || TOOLS+=(old)
say "comparing (${TOOLS[*]})"
{
  for tool in "${TOOLS[@]}"; do
    for i in $(seq 1 "$RUNS"); do
      for j in $(seq 1 "$RUNS"); do
        ((i == j)) && continue
        echo "pair $tool $i $j $(compare "$tool" "pair-$i-$j" "$OUT/clean/$i" "$OUT/clean/$j")"
      done
    done
    # The old comparison takes one baseline only.
    if [[ "$tool" == new ]]; then
      for j in $(seq 4 "$RUNS"); do
        echo "envelope $tool $j $(compare "$tool" "envelope-$j" "$OUT/clean/$((j - 3))" \
          "$OUT/clean/$((j - 2))" "$OUT/clean/$((j - 1))" "$OUT/clean/$j")"
      done
    fi
    for d in "${DEGRADATIONS[@]}"; do
      for i in $(seq 1 "$RUNS"); do
        echo "degraded $tool $d $i $(compare "$tool" "$d-$i" "$OUT/clean/$i" "$OUT/degraded/$d")"
      done
    done
  done
} >"$OUT/comparisons.txt"

for key in "${!EXIT_CODES[@]}"; do echo "exit $key ${EXIT_CODES[$key]}"; done >"$OUT/exits.txt"

python3 - "$OUT" "$RUNS" <<'PY'
import collections, json, os, sys
out, runs = sys.argv[1], int(sys.argv[2])
exits = dict(line.split()[1:] for line in open(f"{out}/exits.txt"))

def regressed_rows(tool, name):
    path = f"{out}/compare/{tool}/{name}/comparison.json"
    if not os.path.exists(path):
        return None
    rows = json.load(open(path))["rows"]
    return [f'{r["scope"]} {r.get("label") or r["metric"]}' for r in rows if r["regressed"]]

result = {"runs": runs, "run_exit_codes": exits, "tools": {}}
lines = [line.split() for line in open(f"{out}/comparisons.txt")]
for tool in sorted({l[1] for l in lines}):
    t = {}
    pairs = [l for l in lines if l[0] == "pair" and l[1] == tool]
    alarms = collections.Counter()
    errors = 0
    for _, _, i, j, code in pairs:
        if code == "1":
            alarms.update(regressed_rows(tool, f"pair-{i}-{j}") or ["?"])
        elif code != "0":
            errors += 1
    t["pairs"] = {"compared": len(pairs), "false_alarms": sum(1 for p in pairs if p[4] == "1"),
                  "errors": errors, "rows": alarms.most_common()}
    env = [l for l in lines if l[0] == "envelope" and l[1] == tool]
    if env:
        t["envelope_of_three"] = {"compared": len(env),
                                  "false_alarms": sum(1 for e in env if e[3] == "1")}
    t["degradations"] = {}
    for d in sorted({l[2] for l in lines if l[0] == "degraded" and l[1] == tool}):
        ds = [l for l in lines if l[0] == "degraded" and l[1] == tool and l[2] == d]
        rows = collections.Counter()
        for l in ds:
            if l[4] == "1":
                rows.update(regressed_rows(tool, f"{d}-{l[3]}") or ["?"])
        t["degradations"][d] = {"caught": sum(1 for l in ds if l[4] == "1"), "of": len(ds),
                                "rows": rows.most_common(4)}
    result["tools"][tool] = t
json.dump(result, open(f"{out}/gate.json", "w"), indent=2)

clean_fail = [k for k, v in exits.items() if k.startswith("clean") and v != "0"]
print(f"\n{runs} clean runs: {runs - len(clean_fail)} exited 0 on their SLOs"
      + (f" (not: {', '.join(sorted(clean_fail))})" if clean_fail else ""))
for tool, t in result["tools"].items():
    label = "this loadgen" if tool == "new" else "the old comparison"
    p = t["pairs"]
    print(f"\n{label}: {p['false_alarms']} false alarms in {p['compared']} ordered pairs of clean runs"
          + (f", {p['errors']} comparisons refused" if p["errors"] else ""))
    for row, n in p["rows"][:6]:
        print(f"    {n:3}× {row}")
    if "envelope_of_three" in t:
        e = t["envelope_of_three"]
        print(f"  against the three runs before it: {e['false_alarms']} false alarms in {e['compared']}")
    for d, v in t["degradations"].items():
        print(f"  {d:8} caught against {v['caught']} of {v['of']} clean runs (its run exited {exits.get(d)})")
        for row, n in v["rows"]:
            print(f"    {n:3}× {row}")
print(f"\nfigures: {out}/gate.json")
PY
