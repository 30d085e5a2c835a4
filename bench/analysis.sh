#!/usr/bin/env bash
# What `loadgen report` costs on a long run (issue 10): max RSS and wall time of the analysis
# of a synthetic run directory (examples/synthetic_run.rs: the stock peak scenario's scopes,
# ~300 requests/s with realistic histograms, its three faults as happened) at a short and a
# long length, and the ratio of their RSS. The goal: RSS(long)/RSS(short) <= 1.1.
#
#   bash bench/analysis.sh [--hours-small 1] [--hours-large 24] [--no-build]
#
# The run directories live in a mktemp directory, deleted at exit (24 h is ~0.7 GB).
# Needs /usr/bin/time (Debian's `time`; installed if missing).
set -euo pipefail

HOURS_SMALL=1
HOURS_LARGE=24
BUILD=1
while (($#)); do
  case "$1" in
    --hours-small) HOURS_SMALL="${2:?}"; shift 2 ;;
    --hours-large) HOURS_LARGE="${2:?}"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) sed -n 2,10p "$0"; exit 0 ;;
    *) echo "analysis: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

say() { printf 'analysis: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }
seconds_of() { awk -v h="$1" 'BEGIN { printf "%d", h * 3600 }'; }
for hours in "$HOURS_SMALL" "$HOURS_LARGE"; do
  [[ "$hours" =~ ^[0-9]+(\.[0-9]+)?$ ]] && (($(seconds_of "$hours") > 0)) ||
    die "hours must be a positive number, not '$hours'"
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"
export PATH="$HOME/.cargo/bin:$PATH"

if [[ ! -x /usr/bin/time ]]; then
  say "installing time (for /usr/bin/time -v)"
  apt-get install -y -qq time >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq time >/dev/null; }
fi
if ((BUILD)); then
  say "building loadgen and examples/synthetic_run in release"
  (cd "$ROOT" && cargo build --release -p loadgen --bin loadgen --example synthetic_run) ||
    die "the build failed"
fi
for binary in "$TARGET/loadgen" "$TARGET/examples/synthetic_run"; do
  [[ -x "$binary" ]] || die "$binary is missing (run without --no-build)"
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/loadgen-analysis.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

# About 27 MB of run directory per simulated hour at 300 requests/s; ask for 40.
need_mb=$(awk -v a="$HOURS_SMALL" -v b="$HOURS_LARGE" 'BEGIN { printf "%d", (a + b) * 40 + 100 }')
free_mb=$(df -Pm "$WORK" | awk 'NR == 2 { print $4 }')
((free_mb >= need_mb)) || die "$WORK has $free_mb MB free; the run directories need about $need_mb MB (set TMPDIR elsewhere)"

mb() { awk -v b="$(stat -c %s "$1")" 'BEGIN { printf "%.1f", b / 1048576 }'; }
ROWS=()
RSS=()
for hours in "$HOURS_SMALL" "$HOURS_LARGE"; do
  seconds=$(seconds_of "$hours")
  dir="$WORK/run-${hours}h"
  say "generating ${hours} h ($seconds s) in $dir"
  gen_start=$(date +%s.%N)
  "$TARGET/examples/synthetic_run" --scenario "$ROOT/scenarios/peak.toml" --seconds "$seconds" --out "$dir"
  gen_s=$(awk -v a="$gen_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  say "running loadgen report on ${hours} h"
  rc=0
  /usr/bin/time -v -o "$WORK/time-${hours}h.txt" "$TARGET/loadgen" report "$dir" >"$WORK/report-${hours}h.txt" 2>&1 || rc=$?
  # 1 is a failed verdict (the synthetic data is not meant to pass); anything else is not a report.
  if ((rc > 1)); then
    cat "$WORK/report-${hours}h.txt" >&2
    die "loadgen report on the ${hours} h directory exited $rc"
  fi
  grep -q '"judged": true' "$dir/summary.json" || die "the ${hours} h summary.json was not judged"
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%.1f", s }' "$WORK/time-${hours}h.txt")
  rss_kb=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$WORK/time-${hours}h.txt")
  RSS+=("$rss_kb")
  ROWS+=("$(printf '%-6s %9s %13s %17s %10s %10s %12s' "${hours} h" "$seconds" "$(mb "$dir/series.csv")" \
    "$(mb "$dir/histograms/intervals.hlog")" "$gen_s" "$wall" "$(awk -v k="$rss_kb" 'BEGIN { printf "%.1f", k / 1024 }')")")
  rm -rf "$dir"
done

printf '\n%-6s %9s %13s %17s %10s %10s %12s\n' run seconds "series.csv MB" "intervals.hlog MB" "gen wall s" "report s" "max RSS MB"
printf '%s\n' "${ROWS[@]}"
ratio=$(awk -v a="${RSS[0]}" -v b="${RSS[1]}" 'BEGIN { printf "%.2f", b / a }')
verdict=$(awk -v r="$ratio" 'BEGIN { print (r <= 1.1) ? "met" : "not met" }')
printf '\nRSS(%s h) / RSS(%s h) = %s (goal <= 1.1: %s)\n' "$HOURS_LARGE" "$HOURS_SMALL" "$ratio" "$verdict"
