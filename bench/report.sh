#!/usr/bin/env bash
# The report's budget on a long run (issue 14): report.html of a 1-hour run at most 3 MB,
# rendered by Chromium in under a second. A synthetic 1 h run directory
# (examples/synthetic_run.rs: the stock peak scenario's scopes, ~300 requests/s, three
# instances, its faults as happened) is judged by `loadgen report`; then headless Chromium
# renders report.html and, for its start-up cost, an empty page, five times each, and the
# medians' difference is the report's own render time.
#
#   bash bench/report.sh [--hours 1] [--no-build]
#
# Needs chromium (Debian's package). The run directory lives in a mktemp dir, deleted at exit.
set -euo pipefail

HOURS=1
BUILD=1
while (($#)); do
  case "$1" in
    --hours) HOURS="${2:?}"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) sed -n 2,11p "$0"; exit 0 ;;
    *) echo "report: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
say() { printf 'report: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }
command -v chromium >/dev/null || die "needs chromium (apt-get install chromium)"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"
export PATH="$HOME/.cargo/bin:$PATH"
if ((BUILD)); then
  say "building loadgen and examples/synthetic_run in release"
  (cd "$ROOT" && cargo build --release -p loadgen --bin loadgen --example synthetic_run) || die "the build failed"
fi
WORK="$(mktemp -d "${TMPDIR:-/tmp}/loadgen-report.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

seconds=$(awk -v h="$HOURS" 'BEGIN { printf "%d", h * 3600 }')
say "generating ${HOURS} h ($seconds s)"
"$TARGET/examples/synthetic_run" --scenario "$ROOT/scenarios/peak.toml" --seconds "$seconds" --out "$WORK/run"
rc=0
"$TARGET/loadgen" report "$WORK/run" >"$WORK/report.txt" 2>&1 || rc=$?
((rc <= 1)) || { cat "$WORK/report.txt" >&2; die "loadgen report exited $rc"; }
html="$WORK/run/report.html"
size=$(stat -c %s "$html")
printf '<!DOCTYPE html><title>empty</title>' >"$WORK/empty.html"

render() { # median wall seconds of five headless renders of $1
  local page="$1" times=() profile
  for _ in 1 2 3 4 5; do
    profile=$(mktemp -d)
    local start end
    start=$(date +%s.%N)
    chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
      --disable-background-networking --disable-component-update --disable-sync \
      --user-data-dir="$profile" --dump-dom "file://$page" >/dev/null 2>&1
    end=$(date +%s.%N)
    rm -rf "$profile"
    times+=("$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')")
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n 3p
}
empty_s=$(render "$WORK/empty.html")
report_s=$(render "$html")
own=$(awk -v a="$report_s" -v b="$empty_s" 'BEGIN { printf "%.3f", a - b }')
mb=$(awk -v b="$size" 'BEGIN { printf "%.2f", b / 1048576 }')
points=$(grep -o '"second":' "$html" | wc -l)
printf '\n%-8s %12s %12s %16s %16s %14s\n' run "report MB" "chart points" "render s (med)" "empty page s" "report's own s"
printf '%-8s %12s %12s %16s %16s %14s\n' "${HOURS} h" "$mb" "$points" "$report_s" "$empty_s" "$own"
printf '\nbudget: report <= 3 MB: %s; own render < 1 s: %s\n' \
  "$(awk -v m="$mb" 'BEGIN { print (m <= 3) ? "met" : "NOT met" }')" \
  "$(awk -v s="$own" 'BEGIN { print (s < 1) ? "met" : "NOT met" }')"
