#!/usr/bin/env bash
# Quick start: from a fresh machine to a peak drill report in one command.
#
#   docker/local/quickstart.sh [--full]
#
# Installs the Debian packages the local stack needs (if missing), builds loadgen and the
# reference backend (release), starts the local stack (docker/local/stack.sh), runs
# scenarios/peak.toml against it for 60 s (the whole 10 minutes with --full) over TLS and
# HTTP/2 (its base_url, trusting the stack's throwaway CA with --ca-file), always stops the
# stack again, and prints where the report is. The exit code is loadgen's.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STACK="$REPO_ROOT/docker/local/stack.sh"
STATE_DIR="$REPO_ROOT/.stack"
DURATION=(--duration 60s)

case "${1:-}" in
  --full) DURATION=() ;;
  "") ;;
  *) echo "usage: $0 [--full]" >&2; exit 2 ;;
esac

say() { printf '\n== %s\n' "$*"; }

# A top-level string of the stack's state.json.
state_value() { sed -n "s/^  \"$1\": *\"\([^\"]*\)\".*/\1/p" "$STATE_DIR/state.json"; }

install_packages() {
  local packages=(nginx openssl postgresql redis-server prometheus curl iproute2) missing=() p
  for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  say "installing ${missing[*]}"
  local sudo=()
  ((EUID == 0)) || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # The packages start their own daemons on fixed ports where systemd runs; the stack
  # starts its own instances on free ports, so stop the packaged ones.
  for p in nginx postgresql redis-server prometheus; do
    "${sudo[@]}" service "$p" stop >/dev/null 2>&1 || true
  done
}

main() {
  command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs) first" >&2; exit 2; }
  install_packages

  say "building loadgen and platform-backend (release)"
  (cd "$REPO_ROOT" && cargo build --release -p loadgen -p platform-backend)
  local target="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
  [[ "$target" == /* ]] || target="$REPO_ROOT/$target"

  say "starting the local stack"
  # Stop the stack however this script ends (success, failure, Ctrl-C).
  trap '"$STACK" down --state-dir "$STATE_DIR" || true' EXIT
  PLATFORM_BACKEND_BIN="$target/release/platform-backend" "$STACK" up --state-dir "$STATE_DIR"
  local base_url ca_file
  # nginx's TLS listener (HTTP/2), whose certificate the stack's throwaway CA signed.
  base_url="$(state_value base_url)"
  ca_file="$(state_value ca_file)"
  [[ -n "$base_url" && -n "$ca_file" ]] || { echo "no base_url or ca_file in $STATE_DIR/state.json" >&2; exit 3; }

  say "running scenarios/peak.toml against $base_url ${DURATION[*]:-(full length)}"
  local out="$REPO_ROOT/reports" rc=0
  # The drill's process faults find (and restart) the backends through the state file.
  LOADGEN_STACK_STATE="$STATE_DIR/state.json" \
    "$target/release/loadgen" run "$REPO_ROOT/scenarios/peak.toml" --target "$base_url" \
    --ca-file "$ca_file" "${DURATION[@]}" --out "$out" || rc=$?

  local run
  run="$(ls -td "$out"/*/ 2>/dev/null | head -n 1)"
  say "stopping the local stack"
  "$STACK" down --state-dir "$STATE_DIR" && trap - EXIT
  if [[ -n "$run" ]]; then
    say "report: ${run}report.html (summary: ${run}summary.json); loadgen exited $rc"
  else
    say "no report was written; loadgen exited $rc"
  fi
  exit "$rc"
}

main "$@"
