#!/usr/bin/env bash
# Renders a loadgen report.html in headless Chromium (Debian's `chromium`), offline:
#   bash docs/screenshot-report.sh reports/<run>/report.html report.png
# Writes the screenshot, prints the rendered DOM on stdout and Chromium's log (console
# messages included) on stderr. The tests use it to check the report renders cleanly.
set -euo pipefail
report=$(realpath "$1")
png=$(realpath -m "${2:-report.png}")
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
  --disable-background-networking --disable-component-update --disable-sync
  --disable-default-apps --disable-extensions --user-data-dir="$profile"
  --enable-logging=stderr --v=0 --hide-scrollbars --window-size=1100,2600)
chromium "${flags[@]}" --screenshot="$png" "file://$report" >/dev/null
chromium "${flags[@]}" --dump-dom "file://$report"
