#!/usr/bin/env bash
# Screenshots of the stock peak drill's report and of a `loadgen compare` report, rendered
# offline in headless Chromium by docs/screenshot-report.sh, into docs/screenshots/:
#
#   bash docs/screenshots.sh                 # starts the local stack, runs the peak drill
#                                            # twice (60 s each: a baseline, then a run
#                                            # gated on it), stops the stack, renders both
#   bash docs/screenshots.sh --from RUN_DIR  # renders RUN_DIR's report.html and, if it has
#                                            # one, its comparison.html
#
# Fails when Chromium logs a console message, a refused (CSP) load or a network error: the
# pages are self-contained and must render with nothing fetched.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHOTS="$ROOT/docs/screenshots"
STACK="$ROOT/docker/local/stack.sh"
STATE_DIR="$ROOT/.stack"
say() { printf 'screenshots: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }

render() { # page png: renders, checks Chromium's log
  local page="$1" png="$2" log
  log="$(mktemp)"
  bash "$ROOT/docs/screenshot-report.sh" "$page" "$png" >/dev/null 2>"$log" || { cat "$log" >&2; die "chromium failed on $page"; }
  if grep -E "CONSOLE|Uncaught|Refused to|net::ERR" "$log" >&2; then
    die "$page logged the lines above"
  fi
  rm -f "$log"
  say "wrote $png ($(stat -c %s "$png") bytes)"
}

run_dir=""
case "${1:-}" in
  --from) run_dir="$(realpath "${2:?--from needs a run directory}")" ;;
  "") ;;
  *) die "usage: $0 [--from RUN_DIR]" ;;
esac

if [[ -z "$run_dir" ]]; then
  (cd "$ROOT" && cargo build --release -p loadgen -p platform-backend)
  target="${CARGO_TARGET_DIR:-$ROOT/target}"
  [[ "$target" == /* ]] || target="$ROOT/$target"
  out="$(mktemp -d)"
  trap '"$STACK" down --state-dir "$STATE_DIR" >/dev/null 2>&1 || true' EXIT
  PLATFORM_BACKEND_BIN="$target/release/platform-backend" "$STACK" up --state-dir "$STATE_DIR"
  base_url="$(sed -n 's/.*"base_url": *"\([^"]*\)".*/\1/p' "$STATE_DIR/state.json")"
  peak() {
    LOADGEN_STACK_STATE="$STATE_DIR/state.json" "$target/release/loadgen" run \
      "$ROOT/scenarios/peak.toml" --target "$base_url" --duration 60s --seed 7 --quiet "$@" || true
  }
  baseline="$(peak --out "$out/baseline")"
  run_dir="$(peak --out "$out/current" --baseline "$baseline")"
  "$STACK" down --state-dir "$STATE_DIR" && trap - EXIT
  [[ -d "$run_dir" ]] || die "the peak drill wrote no run directory"
fi

mkdir -p "$SHOTS"
render "$run_dir/report.html" "$SHOTS/peak-report.png"
if [[ -f "$run_dir/comparison.html" ]]; then
  render "$run_dir/comparison.html" "$SHOTS/compare.png"
fi
