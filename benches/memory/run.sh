#!/usr/bin/env bash
# Peak RSS of the service for the worst request of each kind within the default limits (max
# text, max batch, max eval, the 1 Hz WAV, max audio), alone and six in parallel; each case on a
# fresh `needtag serve`. Goal: at most 800 MB for every six-in-parallel case.
#   benches/memory/run.sh [--only max_audio] [--parallel 6]
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x target/release/needtag ] || cargo build --release --locked
uptime
exec python3 benches/memory/worst.py "$@"
