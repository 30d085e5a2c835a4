#!/usr/bin/env bash
# The nightly performance gate's steps, runnable anywhere (docker/ci/nightly.yml calls it on
# GitHub Actions): bring the reference platform up with Docker Compose, run the nightly
# scenario against it, judge it on its SLOs and against the kept baselines, tear the
# platform down, keep the artifacts, and keep a passing run as a baseline by the rules below.
#
#   docker/ci/nightly.sh [--duration 10m] [--scenario scenarios/soak.toml]
#       [--policy docker/ci/policy.toml] [--out reports] [--loadgen target/release/loadgen]
#       [--baselines baselines] [--save-baseline] [--keep 5] [--rebaseline]
#       [--local-images TAG [--build-images]] [--project platform] [--branch NAME]
#
# --scenario and --policy are paths in the checkout (as the workflow passes them); --out,
# --baselines and --loadgen are relative to where the script is started.
# Exits with the run's code (README: 0 pass; 1 an SLO verdict, missing data, a fault that
# did not happen, or the baseline gate; 2 bad input; 3 the run could not start or the
# platform did not come up; 4 a fault could not be recovered).
#
# The platform: `docker compose` (v2) or `docker-compose` (v1), whichever is installed,
# with docker/docker-compose.yml; `up --wait` where Compose has it, else the script waits
# until every container is running and healthy. --local-images TAG uses the images
# docker/compose/local-images.sh built (no registry; --build-images builds them first),
# else Compose builds and pulls. nginx's plain-HTTP port is published on a port Docker
# picks on 127.0.0.1. The platform is always taken down (down -v), also on failure or
# a signal; its logs go to OUT/platform.log first.
#
# Baselines (docs/compare.md): --baselines DIR holds up to --keep passing nights, each a
# run directory DIR/night-<time>. The run is compared with all of them at once (their
# envelope). With --save-baseline (the workflow passes it on main only), a run that exited
# 0 and whose generator was not the bottleneck joins them while there are fewer than
# --keep; once full the set is frozen — it changes only by re-baselining, so a slowdown
# that creeps in a little each night cannot become the norm. --rebaseline judges the run
# on its SLOs only and, if it passes (and --save-baseline), makes it the only baseline.
# Baselines of another summary schema are set aside the same way (a warning says so). A
# set made on another branch (DIR/branch says which: main's, restored by a branch's
# workflow) is compared with, and said; no set at all is a notice.
#
# On GitHub Actions (GITHUB_OUTPUT set) it writes the step outputs code, dir (the run
# directory, empty when there is none) and baseline_saved (true/false).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
log() { printf 'nightly: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }
# A GitHub annotation where it is read, a plain line elsewhere.
notice() {
  if [[ -n "${GITHUB_ACTIONS:-}" ]]; then echo "::$1::$2"; else log "$1: $2"; fi
}

DURATION=10m
SCENARIO=scenarios/soak.toml
POLICY=docker/ci/policy.toml
OUT=reports
LOADGEN=""
BASELINES=baselines
SAVE=0
KEEP=5
REBASELINE=0
LOCAL_TAG=""
BUILD_IMAGES=0
PROJECT=platform
BRANCH="${GITHUB_REF_NAME:-}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) DURATION="${2:?--duration needs a value}"; shift 2 ;;
    --scenario) SCENARIO="${2:?--scenario needs a file}"; shift 2 ;;
    --policy) POLICY="${2:?--policy needs a file}"; shift 2 ;;
    --out) OUT="${2:?--out needs a directory}"; shift 2 ;;
    --loadgen) LOADGEN="${2:?--loadgen needs a path}"; shift 2 ;;
    --baselines) BASELINES="${2:?--baselines needs a directory}"; shift 2 ;;
    --save-baseline) SAVE=1; shift ;;
    --keep) KEEP="${2:?--keep needs a number}"; shift 2 ;;
    --rebaseline) REBASELINE=1; shift ;;
    --local-images) LOCAL_TAG="${2:?--local-images needs a tag}"; shift 2 ;;
    --build-images) BUILD_IMAGES=1; shift ;;
    --project) PROJECT="${2:?--project needs a name}"; shift 2 ;;
    --branch) BRANCH="${2:?--branch needs a name}"; shift 2 ;;
    -h|--help) sed -n '2,38p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
[[ "$KEEP" =~ ^[1-9][0-9]*$ ]] || die "--keep wants a whole number of at least 1, not '$KEEP'"
((BUILD_IMAGES == 0)) || [[ -n "$LOCAL_TAG" ]] || die "--build-images needs --local-images TAG"
[[ -n "$BRANCH" ]] || BRANCH="$(git -C "$REPO_ROOT" rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)"
# Paths the caller gave are the caller's; the script works from the checkout.
absolute() { [[ "$1" == /* ]] && echo "$1" || echo "$PWD/$1"; }
OUT="$(absolute "$OUT")"
BASELINES="$(absolute "$BASELINES")"
# Without --loadgen: the checkout's release build.
if [[ -n "$LOADGEN" ]]; then LOADGEN="$(absolute "$LOADGEN")"; else LOADGEN="$REPO_ROOT/target/release/loadgen"; fi
[[ -x "$LOADGEN" ]] || die "$LOADGEN not found (cargo build --release -p loadgen, or --loadgen PATH)"
cd "$REPO_ROOT"
mkdir -p "$OUT"

CODE=3
RUN_DIR=""
SAVED=false
outputs() {
  if [[ -n "${GITHUB_OUTPUT:-}" ]]; then
    { echo "code=$CODE"; echo "dir=$RUN_DIR"; echo "baseline_saved=$SAVED"; } >>"$GITHUB_OUTPUT"
  fi
}

# ---------------------------------------------------------------------------------------
# the platform

if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null; then
  COMPOSE=(docker-compose)
else
  die "neither \`docker compose\` (v2) nor docker-compose (v1) is installed"
fi
COMPOSE+=(-f docker/docker-compose.yml)
if [[ -n "$LOCAL_TAG" ]]; then
  COMPOSE+=(-f docker/compose/docker-compose.local.yml)
  export LOCAL_IMAGE_TAG="$LOCAL_TAG"
fi
COMPOSE+=(-p "$PROJECT")
# Docker picks the host ports: a fixed one from the caller's environment could clash.
unset PLATFORM_HTTP_PORT PLATFORM_HTTPS_PORT PLATFORM_H2C_PORT PLATFORM_PROMETHEUS_PORT COMPOSE_FILE COMPOSE_PROJECT_NAME

UP=0
teardown() {
  ((UP)) || return 0
  UP=0
  "${COMPOSE[@]}" logs --no-color --tail 500 >"$OUT/platform.log" 2>&1 || true
  "${COMPOSE[@]}" down -v --remove-orphans -t 10 >&2 || log "compose down failed (see above)"
}
finish() {
  local status=$?
  teardown
  outputs
  exit "$status"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# Waits until every container of the project runs and, where it has a healthcheck, is
# healthy (Compose v1 has no `up --wait`). Fails at once on an exited or unhealthy one.
wait_healthy() {
  local deadline=$((SECONDS + ${NIGHTLY_UP_TIMEOUT:-300})) ids states pending
  while :; do
    ids="$("${COMPOSE[@]}" ps -q)"
    [[ -n "$ids" ]] || { log "no container of project $PROJECT is running"; return 1; }
    # NAME STATUS HEALTH (HEALTH is "none" without a healthcheck)
    # shellcheck disable=SC2086
    states="$(docker inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' $ids)"
    if grep -Eq ' (exited|dead) | unhealthy$' <<<"$states"; then
      log "a service failed to start:"; echo "$states" >&2; return 1
    fi
    pending="$(grep -Ev ' running (healthy|none)$' <<<"$states" || true)"
    [[ -n "$pending" ]] || return 0
    if ((SECONDS >= deadline)); then
      log "not healthy after ${NIGHTLY_UP_TIMEOUT:-300} s:"; echo "$pending" >&2; return 1
    fi
    sleep 1
  done
}

if ((BUILD_IMAGES)); then
  log "building the local images (tag $LOCAL_TAG)"
  docker/compose/local-images.sh build --tag "$LOCAL_TAG" --loadgen-bin "$LOADGEN" >&2
fi
up_args=(up -d)
if [[ -n "$LOCAL_TAG" ]]; then up_args+=(--no-build); else up_args+=(--build); fi
has_wait=0
"${COMPOSE[@]}" up --help 2>/dev/null | grep -q -- '--wait' && has_wait=1
((has_wait)) && up_args+=(--wait)
log "starting the platform: ${COMPOSE[*]} ${up_args[*]}"
UP=1
up_ok=1
"${COMPOSE[@]}" "${up_args[@]}" >&2 || up_ok=0
if ((up_ok && !has_wait)); then wait_healthy || up_ok=0; fi
if ((!up_ok)); then
  teardown
  notice error "the platform did not come up healthy: no run (logs: $OUT/platform.log)"
  exit 3
fi
BASE_URL="http://$("${COMPOSE[@]}" port nginx 8080 | tail -1)"
log "platform up: $BASE_URL"

# ---------------------------------------------------------------------------------------
# the baselines

mapfile -t NIGHTS < <(find "$BASELINES" -mindepth 2 -maxdepth 2 -name summary.json -path '*/night-*' \
  -printf '%h\n' 2>/dev/null | sort)
WANT_SCHEMA="$(python3 -c 'import json; print(json.load(open("docs/summary.schema.json"))["properties"]["schema_version"]["const"])')"
SET_ASIDE=0
baseline_args=()
if ((REBASELINE)); then
  notice notice "re-baselining on request: this run is judged on its SLOs only"
  SET_ASIDE=1
elif ((${#NIGHTS[@]} == 0)); then
  notice notice "no baseline run found for $BRANCH (nor main's): this run is judged on its SLOs only"
else
  stale="$(python3 - "$WANT_SCHEMA" "${NIGHTS[@]}" <<'PY'
import json, sys
want = int(sys.argv[1])
for night in sys.argv[2:]:
    have = json.load(open(f"{night}/summary.json")).get("schema_version")
    if have != want:
        print(f"{night.rsplit('/', 1)[-1]} has summary schema {have}")
PY
)"
  if [[ -n "$stale" ]]; then
    notice warning "the kept baselines were written by another loadgen ($(echo "$stale" | paste -sd ';' -), this one writes $WANT_SCHEMA): re-baselining — this run is judged on its SLOs only"
    SET_ASIDE=1
  else
    origin="$(cat "$BASELINES/branch" 2>/dev/null || echo unknown)"
    [[ "$origin" == "$BRANCH" ]] || notice notice "$BRANCH has no baselines of its own: compared with $origin's"
    log "compared with ${#NIGHTS[@]} baseline night(s): ${NIGHTS[*]##*/}"
    for night in "${NIGHTS[@]}"; do baseline_args+=(--baseline "$night"); done
  fi
fi

# ---------------------------------------------------------------------------------------
# the run

log "running $SCENARIO for $DURATION against $BASE_URL"
CODE=0
"$LOADGEN" run "$SCENARIO" --policy "$POLICY" --duration "$DURATION" --target "$BASE_URL" \
  --out "$OUT" --quiet --run-dir-file "$OUT/run-dir.txt" "${baseline_args[@]}" >/dev/null || CODE=$?
RUN_DIR="$(cat "$OUT/run-dir.txt" 2>/dev/null || true)"
teardown

# ---------------------------------------------------------------------------------------
# keeping the baseline

if ((SAVE)) && [[ -n "$RUN_DIR" ]]; then
  saturated="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["generator"]["saturated"])' "$RUN_DIR/summary.json" 2>/dev/null || echo missing)"
  if ((CODE != 0)); then
    log "not kept as a baseline: the run exited $CODE"
  elif [[ "$saturated" != False ]]; then
    notice warning "this run's generator was the bottleneck: not kept as a baseline (its latency includes loadgen's own lateness)"
  else
    if ((SET_ASIDE)) || [[ "$(cat "$BASELINES/branch" 2>/dev/null || true)" != "$BRANCH" ]]; then
      rm -rf "$BASELINES"
      NIGHTS=()
    fi
    if ((${#NIGHTS[@]} >= KEEP)); then
      log "not kept as a baseline: the set holds its $KEEP nights (since ${NIGHTS[0]##*/night-}); it changes only by re-baselining"
    else
      mkdir -p "$BASELINES"
      night="$BASELINES/night-$(date -u +%Y%m%dT%H%M%SZ)"
      cp -r "$RUN_DIR" "$night"
      echo "$BRANCH" >"$BASELINES/branch"
      SAVED=true
      log "kept as baseline $((${#NIGHTS[@]} + 1)) of $KEEP: $night"
    fi
  fi
fi

log "artifacts: ${RUN_DIR:-no run directory} and $OUT/platform.log; exit $CODE"
exit "$CODE"
