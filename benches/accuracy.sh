#!/usr/bin/env bash
# The accuracy table of docs/accuracy.md: `needtag eval --json` on every labeled set, hybrid, with
# the verifier and without it (thresholds alone), and keyword-only with the verifier.
#
#   benches/accuracy.sh [SET...]      default: dev dev2 hard (development sets only)
#
# SET is dev, dev2, test, test2, test3 (need-library/eval/) or hard (../shared/eval/hard.jsonl, skipped
# when absent). The held-out sets test, test2 and test3 are only ever reported: name them explicitly.
# Per-category F1 goes to benches/out/accuracy-<set>-<mode>.json.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${NEEDTAG_BIN:-target/release/needtag}
mkdir -p benches/out
sets=("$@")
[ ${#sets[@]} -gt 0 ] || sets=(dev dev2 hard)
printf '| set | memos | mode | needs micro-F1 | needs P / R | actions micro-F1 | negated needs tagged | planned / negated actions counted |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for set in "${sets[@]}"; do
  case $set in
    hard) file=../shared/eval/hard.jsonl ;;
    *) file=need-library/eval/$set.jsonl ;;
  esac
  if [ ! -f "$file" ]; then
    echo "skip $set: $file is absent" >&2
    continue
  fi
  for mode in verifier thresholds keyword; do
    flags=()
    case $mode in
      thresholds) flags=(--no-verifier) ;;
      keyword) flags=(--keyword-only) ;;
    esac
    out=benches/out/accuracy-$set-$mode.json
    "$bin" eval "$file" --json "${flags[@]}" > "$out" 2>/dev/null
    python3 - "$out" "$set" "$mode" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
n, a = r['needs'], r['actions']
mode = {'verifier': 'hybrid, verifier', 'thresholds': 'hybrid, thresholds only', 'keyword': 'keyword-only, verifier'}[sys.argv[3]]
print(f"| {sys.argv[2]} | {r['memos']} | {mode} | {n['micro_f1']:.3f} | {n['micro_precision']:.3f} / {n['micro_recall']:.3f} | "
      f"{a['micro_f1']:.3f} | {len(r['negated_needs_tagged'])} | {len(r['planned_actions_counted'])} / {len(r['negated_actions_counted'])} |")
EOF
  done
done
