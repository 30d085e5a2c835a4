#!/usr/bin/env bash
# The peak drill N times in a row on one local stack: does the gate ever fail a platform
# that kept its promise? Brings the local reference stack up once (docker/local/stack.sh),
# runs scenarios/peak.toml against it N times (--duration 60s unless --full), and prints,
# per run: the exit code, the error classes, the requests sent again because the server had
# not processed them (retried_unprocessed), and the errors no fault explains — failed
# requests meant to start outside every fault's window (start to end, plus one second).
#
#   bash bench/stability.sh 10            # 10 runs of the 60 s drill
#   bash bench/stability.sh 3 --full      # the full-length drill
#   bash bench/stability.sh 10 --no-build # the release binaries as they are
#
# The run directories go to bench/out/stability-<timestamp>/; a JSON line per run is
# appended to its runs.jsonl. Exits 0 when every run exited 0 with no unexplained error.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="$REPO_ROOT/docker/local/stack.sh"
say() { printf '\n== %s\n' "$*" >&2; }
die() { echo "stability.sh: $*" >&2; exit 2; }

RUNS="${1:-}"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "usage: $0 N [--full] [--no-build]"
shift
DURATION=(--duration 60s)
BUILD=1
for arg in "$@"; do
  case "$arg" in
    --full) DURATION=() ;;
    --no-build) BUILD=0 ;;
    *) die "unknown option $arg" ;;
  esac
done

TARGET="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
[[ "$TARGET" == /* ]] || TARGET="$REPO_ROOT/$TARGET"
if ((BUILD)); then
  say "building loadgen and platform-backend (release)"
  (cd "$REPO_ROOT" && cargo build --release -p loadgen -p platform-backend)
fi

OUT="$REPO_ROOT/bench/out/stability-$(date -u +%Y%m%dT%H%M%SZ)"
STATE_DIR="$(mktemp -d)"
mkdir -p "$OUT"
trap '"$STACK" down --state-dir "$STATE_DIR" >/dev/null 2>&1 || true; rm -rf "$STATE_DIR"' EXIT
say "starting the local stack"
PLATFORM_BACKEND_BIN="$TARGET/release/platform-backend" "$STACK" up --state-dir "$STATE_DIR" >&2
state_value() { sed -n "s/^  \"$1\": *\"\([^\"]*\)\".*/\1/p" "$STATE_DIR/state.json"; }
BASE_URL="$(state_value base_url)"
CA_FILE="$(state_value ca_file)"

# One line of figures per run, from its run directory (summary.json and series.csv).
figures() {
  python3 - "$1" "$2" <<'PY'
import csv, json, math, sys
run_dir, code = sys.argv[1], int(sys.argv[2])
summary = json.load(open(f"{run_dir}/summary.json"))
windows = [
    (o["started_ms"] // 1000, math.ceil((o.get("ended_ms") or o["started_ms"]) / 1000) + 1)
    for o in summary["faults"].get("occurrences", [])
    if o.get("started_ms") is not None
]
unexplained = 0
for row in csv.DictReader(open(f"{run_dir}/series.csv")):
    if row["scope"] != "all":
        continue
    second = int(row["second"])
    if not any(start <= second <= end for start, end in windows):
        unexplained += int(row["errors"] or 0)
totals = summary["totals"]
print(json.dumps({
    "run": run_dir.rstrip("/").split("/")[-1],
    "exit": code,
    "requests": totals["requests"],
    "errors": totals["errors"],
    "errors_by_class": totals["errors_by_class"],
    "retried_unprocessed": totals.get("retried_unprocessed", 0),
    "unexplained_errors": unexplained,
    "failed_verdicts": [f'{v["name"]} [{v["window"]}]' for v in summary["slos"]
                        if v["status"] != "pass" and not v.get("allowed")],
}))
PY
}

failures=0
for ((i = 1; i <= RUNS; i++)); do
  say "run $i of $RUNS"
  code=0
  LOADGEN_STACK_STATE="$STATE_DIR/state.json" \
    "$TARGET/release/loadgen" run "$REPO_ROOT/scenarios/peak.toml" --target "$BASE_URL" \
    --ca-file "$CA_FILE" "${DURATION[@]}" --out "$OUT" --quiet >/dev/null || code=$?
  run="$(ls -td "$OUT"/*/ 2>/dev/null | head -n 1)"
  line="$(figures "$run" "$code")"
  echo "$line" | tee -a "$OUT/runs.jsonl"
  if ((code != 0)) || [[ "$line" != *'"unexplained_errors": 0'* ]]; then
    failures=$((failures + 1))
  fi
done
say "$((RUNS - failures)) of $RUNS runs exited 0 with no error no fault explains (figures: $OUT/runs.jsonl)"
((failures == 0))
