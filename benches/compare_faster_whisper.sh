#!/usr/bin/env bash
# Installs faster-whisper in a local virtualenv (benches/.venv-fw), builds needtag, and runs the
# side-by-side comparison (see compare_faster_whisper.py). Arguments are passed through.
set -euo pipefail
cd "$(dirname "$0")/.."
.ci/setup >/dev/null
if [ ! -x benches/.venv-fw/bin/python ]; then python3 -m venv benches/.venv-fw; fi
benches/.venv-fw/bin/pip install --quiet --disable-pip-version-check faster-whisper==1.2.1 opencc-python-reimplemented==0.1.7
exec benches/.venv-fw/bin/python benches/compare_faster_whisper.py "$@"
