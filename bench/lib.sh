# Shared by bench/run.sh (HTTP/1.1) and bench/h2.sh (HTTP/2): the pieces of the harness that
# are the same for both. Sourced after the script has defined `die` and `say` and set
# DURATION; sets DUR_S and DUR, and defines the helpers below. Uses WORK and NGINX_PID,
# which the script sets.

if [[ "$DURATION" =~ ^([1-9][0-9]*)(s?)$ ]]; then
  DUR_S="${BASH_REMATCH[1]}"
elif [[ "$DURATION" =~ ^([1-9][0-9]*)m$ ]]; then
  DUR_S=$((BASH_REMATCH[1] * 60))
else
  die "--duration wants seconds or minutes (\"10s\", \"2m\"), not '$DURATION'"
fi
DUR="${DUR_S}s"

# Stops the target nginx and removes the scratch directory, however the script ends.
cleanup() {
  if [[ -n "$NGINX_PID" ]]; then
    kill "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}

apt_install() {
  say "installing $* from Debian"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq "$@" >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    apt-get install -y -qq "$@" >/dev/null
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# CPU seconds nginx's worker has used so far (user + system, from /proc).
nginx_cpu() {
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$NGINX_WORKER/stat"
}
