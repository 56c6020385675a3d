#!/usr/bin/env bash
# End-to-end browser tests of the web console.
#
# Starts `needtag serve` on a free loopback port with API keys, waits for /readyz, runs the
# playwright-core tests (headless Debian Chromium at /usr/bin/chromium, nothing downloaded),
# always stops the server, and exits with the tests' status.
#
#   NEEDTAG_BIN       the binary (default: target/release/needtag, relative to the repository root)
#   NEEDTAG_CHROMIUM  the browser (default: /usr/bin/chromium)
#   NEEDTAG_CONSOLE_DIR  passed through to the server: serve the console from disk (e.g. src/api/console)
#                        instead of the copy compiled into the binary, to test edits without rebuilding
#   extra arguments are passed to `node --test` (e.g. --test-name-pattern=evaluation)
#
# Screenshots and the server's log go to test-output/console/ at the repository root.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root" || exit 2

bin="${NEEDTAG_BIN:-target/release/needtag}"
case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac
if [[ ! -x "$bin" ]]; then
  echo "run.sh: no needtag binary at $bin (build it, or set NEEDTAG_BIN)" >&2
  exit 2
fi
chromium="${NEEDTAG_CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$chromium" ]]; then
  echo "run.sh: no Chromium at $chromium (apt-get install chromium, or set NEEDTAG_CHROMIUM)" >&2
  exit 2
fi
command -v node >/dev/null || { echo "run.sh: node is not installed" >&2; exit 2; }

out="$root/test-output/console"
mkdir -p "$out"
rm -f "$out"/*.png

if [[ ! -d "$here/node_modules/playwright-core" ]]; then
  echo "==> npm ci (tests/browser)"
  (cd "$here" && npm ci --no-audit --no-fund) || { echo "run.sh: npm ci failed" >&2; exit 2; }
fi

scratch="$(mktemp -d "${TMPDIR:-/tmp}/needtag-browser.XXXXXX")"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
  fi
  rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Keys for the test run only (random, at least 16 characters).
rand() { od -An -tx1 -N12 /dev/urandom | tr -d ' \n'; }
tag_key="tag-$(rand)"
admin_key="admin-$(rand)"
review_key="review-$(rand)"

# A scratch copy of the library, so the reload test can break and mend it without touching the
# repository. Only when this binary accepts it (a binary older than the library on disk may not):
# otherwise the server uses the library compiled into it and the reload test skips the broken-file part.
lib_args=()
lib_dir=""
if [[ -d "$root/need-library" ]]; then
  cp -r "$root/need-library" "$scratch/need-library"
  if "$bin" library check "$scratch/need-library" >"$scratch/library-check.txt" 2>&1; then
    lib_dir="$scratch/need-library"
    lib_args=(--library "$lib_dir")
  else
    echo "==> note: need-library/ does not pass '$bin library check'; serving the library compiled into the binary"
    sed 's/^/    /' "$scratch/library-check.txt" | head -n 20
  fi
fi

# Port 0: the kernel picks a free port and the server prints the address it bound, so no race.
log="$out/server.log"
# The memo archive in the scratch directory: the history, review and metrics tests fill it.
NEEDTAG_API_KEYS="$tag_key:tag,$admin_key:tag+admin,$review_key:review" \
  NEEDTAG_ARCHIVE="$scratch/archive.sqlite" \
  "$bin" serve --bind 127.0.0.1:0 "${lib_args[@]}" >"$log" 2>&1 &
server_pid=$!

is_ready() {
  if command -v curl >/dev/null; then
    [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1")" == 200 ]]
  else
    node -e 'fetch(process.argv[1]).then((r) => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1))' "$1"
  fi
}
base=""
ready=""
for _ in $(seq 1 600); do # up to 60 s
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "run.sh: needtag serve exited early; its log:" >&2
    cat "$log" >&2
    exit 2
  fi
  if [[ -z "$base" ]]; then
    base="$(grep -o 'listening on http://127\.0\.0\.1:[0-9]*' "$log" | head -n1 | sed 's/^listening on //')"
  fi
  if [[ -n "$base" ]] && is_ready "$base/readyz"; then
    ready=1
    break
  fi
  sleep 0.1
done
if [[ -z "$ready" ]]; then
  echo "run.sh: needtag was not ready within 60 s (${base:-no address yet}); its log:" >&2
  cat "$log" >&2
  exit 2
fi
echo "==> needtag ready at $base (pid $server_pid, log $log)"
if [[ -n "${NEEDTAG_CONSOLE_DIR:-}" ]]; then
  echo "    console served from $NEEDTAG_CONSOLE_DIR (NEEDTAG_CONSOLE_DIR), not the copy compiled into the binary"
fi
# A binary built before the console existed serves a placeholder page: say so instead of timing out test by test.
if ! node -e 'fetch(process.argv[1]).then((r) => r.text()).then((t) => process.exit(t.includes("/console/app.js") ? 0 : 1), () => process.exit(1))' "$base/"; then
  echo "run.sh: $bin serves no console at / (built before src/api/console was written?). Rebuild it, or set" >&2
  echo "        NEEDTAG_CONSOLE_DIR=$root/src/api/console to test the files on disk." >&2
  exit 2
fi

echo "==> browser tests"
(
  cd "$here" &&
    NEEDTAG_URL="$base" \
    NEEDTAG_TAG_KEY="$tag_key" \
    NEEDTAG_ADMIN_KEY="$admin_key" \
    NEEDTAG_REVIEW_KEY="$review_key" \
    NEEDTAG_FIXTURES="$root/fixtures/audio" \
    NEEDTAG_SCREENSHOTS="$out" \
    NEEDTAG_LIBRARY_DIR="$lib_dir" \
    NEEDTAG_CHROMIUM="$chromium" \
    node --test --test-concurrency=1 --test-reporter=spec "$@" console.test.mjs
)
status=$?
if [[ $status -ne 0 ]]; then
  echo "==> tests failed ($status); the server's last log lines ($log):"
  tail -n 30 "$log" | sed 's/^/    /'
fi
echo "==> screenshots in $out"
exit "$status"
