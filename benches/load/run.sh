#!/usr/bin/env bash
# Load on the service at its default settings: /v1/tag with the development set's memos, then
# /v1/memos with the ~30 s memo; prints throughput and latency (wrk, from Debian's packages) and
# the service's peak RSS.   benches/load/run.sh [seconds per test, default 30]
# NEEDTAG_BIN names another build to measure (default target/release/needtag), e.g. to alternate
# runs of two builds on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-30}
command -v wrk >/dev/null || { echo "install wrk (apt-get install wrk)" >&2; exit 1; }
[ -f benches/out/memo30.wav ] || benches/.venv-fw/bin/python -c 'import sys; sys.path.insert(0, "benches"); import compare_faster_whisper as c; c.memo_30s()' 2>/dev/null || python3 -c 'import sys; sys.path.insert(0, "benches"); import compare_faster_whisper as c; c.memo_30s()'
port=18181
${NEEDTAG_BIN:-target/release/needtag} serve --bind 127.0.0.1:$port > benches/out/load-server.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
until curl -fs 127.0.0.1:$port/readyz >/dev/null; do sleep 0.3; done
rss() { grep -E "VmRSS|VmHWM" /proc/$pid/status | tr -s ' ' | tr '\n' ' '; echo; }
echo "== idle: $(rss)"
echo "== /v1/tag, 4 connections, ${secs}s"
wrk -t2 -c4 -d${secs}s --latency -s benches/load/tag.lua http://127.0.0.1:$port
echo "== after /v1/tag: $(rss)"
echo "== /v1/memos (~30 s memo), 1 connection (a memo alone), ${secs}s"
wrk -t1 -c1 -d${secs}s --timeout 120s --latency -s benches/load/memos.lua http://127.0.0.1:$port
echo "== /v1/memos (~30 s memo), 2 connections (= workers), ${secs}s"
wrk -t1 -c2 -d${secs}s --timeout 120s --latency -s benches/load/memos.lua http://127.0.0.1:$port
echo "== after /v1/memos: $(rss)"
echo "== /v1/memos, 8 connections (more than workers + queue), ${secs}s"
wrk -t2 -c8 -d${secs}s --timeout 120s --latency -s benches/load/memos.lua http://127.0.0.1:$port
echo "== after overload: $(rss)"
echo "== load average: $(cut -d' ' -f1-3 /proc/loadavg)"
