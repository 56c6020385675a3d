#!/usr/bin/env python3
"""The sweep the transcription defaults were chosen with (docs/transcription.md): each setting
varied alone from the defaults, evaluated with `needtag asr-eval --tags` on the development part
of benches/asr-split.tsv only (real clips and synthetic memos). One line per variant: CER per
set, their mean, tag agreement, transcripts with a problem.

    python3 benches/asr_sweep.py [VARIANT ...]     # default: every variant below

Never run it on the test part: that part is only reported.
"""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "audio"

VARIANTS = {
    "defaults": "",
    "no_prompt": None,  # --no-prompt
    "head_bare": '[asr]\nprompt_head = ""\nprompt_tail = "。"\n',
    "head_short": '[asr]\nprompt_head = "客户那边聊到了"\nprompt_tail = "。"\n',
    "head_plain": '[asr]\nprompt_head = "这次去拜访客户，聊到了"\nprompt_tail = "这些。"\n',
    "head_written": '[asr]\nprompt_head = "以下是销售代表拜访客户后的普通话语音备忘录，内容涉及："\nprompt_tail = "。"\n',
    "tokens60": "[asr]\nprompt_tokens = 60\n",
    "tokens200": "[asr]\nprompt_tokens = 200\n",
    "pad0.2": "[audio]\nvad_pad_s = 0.2\n",
    "pad0.6": "[audio]\nvad_pad_s = 0.6\n",
    "pause0.5": "[audio]\nmax_pause_s = 0.5\n",
    "pause2.0": "[audio]\nmax_pause_s = 2.0\n",
    "vadthr0.35": "[audio]\nvad_threshold = 0.35\n",
    "vadthr0.65": "[audio]\nvad_threshold = 0.65\n",
    "nospeech0.4": "[asr]\nno_speech_threshold = 0.4\n",
    "nospeech0.8": "[asr]\nno_speech_threshold = 0.8\n",
    "sparse0": "[asr]\nmin_chars_per_s = 0.0\n",
    "sparse3.5": "[asr]\nmin_chars_per_s = 3.5\n",
    "margin64": "[asr]\naudio_ctx_margin = 64\n",
    "margin256": "[asr]\naudio_ctx_margin = 256\n",
    "full_output": "[asr]\nrestrict_output = false\n",
    "encoder_q8": "[asr]\nencoder_bf16 = false\n",
}


def evaluate(name: str) -> str:
    toml = VARIANTS[name]
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(toml or "")
    out = {}
    for coll in ("real", "synth"):
        cmd = [str(ROOT / "target" / "release" / "needtag"), "asr-eval", str(SHARED / coll),
               "--split", str(ROOT / "benches" / "asr-split.tsv"), "--part", "dev", "--tags", "--json"]
        if toml is None:
            cmd.append("--no-prompt")
        env = dict(os.environ, NEEDTAG_CONFIG=f.name, NEEDTAG_LOG="warn")
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, check=True)
        out[coll] = json.loads(r.stdout)
    os.unlink(f.name)
    real, synth = out["real"]["mean_cer"], out["synth"]["mean_cer"]
    f1 = out["synth"]["tag_agreement"]["f1"]
    problems = sum(o["transcripts_with_problems"] for o in out.values())
    return f"{name:14} real {real:.4f}  synth {synth:.4f}  mean {(real + synth) / 2:.4f}  tags F1 {f1:.3f}  problems {problems}"


def main() -> None:
    if not SHARED.is_dir():
        sys.exit(f"{SHARED} is absent: the sweep needs the labeled recordings of ../shared")
    for name in sys.argv[1:] or list(VARIANTS):
        if name not in VARIANTS:
            sys.exit(f"unknown variant {name}; known: {', '.join(VARIANTS)}")
        print(evaluate(name), flush=True)


if __name__ == "__main__":
    main()
