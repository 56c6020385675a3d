#!/usr/bin/env python3
"""Peak service RSS for the worst request of each kind within the default limits, alone and six
in parallel. Each measurement starts a fresh `needtag serve` (so its VmHWM is that case's peak),
sends the requests, and reads /proc/PID/status. Standard library only.

    benches/memory/worst.py [--bin target/release/needtag] [--only NAME] [--parallel 6]
"""
import argparse
import array
import io
import json
import os
import random
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import wave

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "benches", "out")
# One key per parallel request: the per-key in-flight limit (4) is not what is measured.
KEYS = [f"memory-bench-key-{i}-0123456789" for i in range(16)]
PORT = 18377

# The defaults these inputs sit at (src/config.rs; README's limits table).
MAX_TEXT_CHARS = 5000
BATCH_MAX = 100
BATCH_MAX_CHARS = 50_000
EVAL_MAX_BYTES = 1024 * 1024
EVAL_MAX_CHARS = 50_000
MAX_AUDIO_BYTES = 32 * 1024 * 1024
MAX_SECONDS = 120.0


def dev_texts():
    with open(os.path.join(ROOT, "need-library", "eval", "dev.jsonl"), encoding="utf-8") as f:
        return [json.loads(l)["text"] for l in f if l.strip()]


def memo_text(chars, seed):
    """Real memo sentences, one after another, cut at `chars`: as many clauses as a text of
    that length has."""
    rnd = random.Random(seed)
    texts = dev_texts()
    out = ""
    while len(out) < chars:
        out += rnd.choice(texts)
    return out[:chars]


def speech_wav(seconds, channels):
    """Fixture speech repeated to `seconds`, on `channels` channels, 16 kHz 16-bit."""
    with wave.open(os.path.join(ROOT, "fixtures", "audio", "thchs30_test.wav")) as w:
        rate = w.getframerate()
        frames = w.readframes(w.getnframes())
    need = int(seconds * rate) * 2
    mono = array.array("h", (frames * (need // len(frames) + 1))[:need])
    inter = array.array("h", bytes(len(mono) * 2 * channels))
    for c in range(channels):
        inter[c::channels] = mono
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(inter.tobytes())
    return buf.getvalue()


def tiny_rate_wav():
    """The 54-byte attack: 8-bit mono, declaring 1 Hz, 10 samples."""
    data = bytes(128 + (i % 7) * 10 for i in range(10))
    fmt = struct.pack("<HHIIHH", 1, 1, 1, 1, 1, 8)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def cases():
    """name -> (what it is, method, path, content type, body)."""
    text = memo_text(MAX_TEXT_CHARS, 1)
    per_item = BATCH_MAX_CHARS // BATCH_MAX
    batch = {"items": [{"id": str(i), "text": memo_text(per_item, 100 + i)} for i in range(BATCH_MAX)]}
    # As many maximal memos as the eval limits allow.
    memos = []
    while (len(memos) + 1) * MAX_TEXT_CHARS <= EVAL_MAX_CHARS:
        line = json.dumps({"id": f"m{len(memos)}", "text": memo_text(MAX_TEXT_CHARS, 1000 + len(memos)), "needs": []},
                          ensure_ascii=False)
        if len(json.dumps({"jsonl": "\n".join(memos + [line])}, ensure_ascii=False).encode()) > EVAL_MAX_BYTES:
            break
        memos.append(line)
    eval_body = {"jsonl": "\n".join(memos)}
    # The most audio one upload may be: 8 channels (the most read) of speech, just under
    # the byte limit and at most max_seconds.
    seconds = min(MAX_SECONDS - 0.5, (MAX_AUDIO_BYTES - 1024) / (16000 * 2 * 8))
    audio = speech_wav(seconds, 8)
    mono_audio = speech_wav(seconds, 1)
    j = lambda v: json.dumps(v, ensure_ascii=False).encode()
    return {
        "max_text": (f"/v1/tag, {MAX_TEXT_CHARS} characters, hybrid", "/v1/tag", "application/json",
                     j({"text": text})),
        "max_batch": (f"/v1/tag/batch, {BATCH_MAX} × {per_item} characters, hybrid", "/v1/tag/batch",
                      "application/json", j(batch)),
        "max_eval": (f"/v1/eval, {len(memos)} memos × {MAX_TEXT_CHARS} characters ({len(j(eval_body)) // 1024} KiB), hybrid",
                     "/v1/eval", "application/json", j(eval_body)),
        "tiny_rate_wav": ("/v1/memos, 54-byte WAV declaring 1 Hz", "/v1/memos", "audio/wav", tiny_rate_wav()),
        "max_audio_mono": (f"/v1/memos, {seconds:.1f} s of speech, 16 kHz mono ({len(mono_audio) / 2**20:.1f} MiB)",
                           "/v1/memos", "audio/wav", mono_audio),
        "max_audio": (f"/v1/memos, {seconds:.1f} s of speech, 16 kHz × 8 channels ({len(audio) / 2**20:.1f} MiB)",
                      "/v1/memos", "audio/wav", audio),
    }


def status_of(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) // 1024
    return out


def start(binary):
    keys = ",".join(f"{k}:tag" for k in KEYS)
    env = dict(os.environ, NEEDTAG_API_KEYS=keys, NEEDTAG_BIND=f"127.0.0.1:{PORT}")
    log = open(os.path.join(OUT, "memory-server.log"), "ab")
    p = subprocess.Popen([binary, "serve"], cwd=ROOT, env=env, stdout=log, stderr=log)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{PORT}/readyz", timeout=1)
            return p
        except Exception:
            time.sleep(0.3)
    p.kill()
    raise SystemExit("the service did not become ready")


def send(path, ctype, body, key, results):
    req = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", data=body,
                                 headers={"content-type": ctype, "authorization": f"Bearer {key}"})
    t = time.time()
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            r.read()
            results.append((r.status, time.time() - t))
    except urllib.error.HTTPError as e:
        code = json.loads(e.read() or b"{}").get("error", {}).get("code", "")
        results.append((f"{e.code} {code}", time.time() - t))
    except Exception as e:
        results.append((f"error {e}", time.time() - t))


def measure(binary, path, ctype, body, parallel):
    p = start(binary)
    try:
        idle = status_of(p.pid)["VmRSS"]
        results = []
        threads = [threading.Thread(target=send, args=(path, ctype, body, KEYS[i], results)) for i in range(parallel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(0.5)
        s = status_of(p.pid)
        return idle, s["VmHWM"], s["VmRSS"], results
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "needtag"))
    ap.add_argument("--only", action="append")
    ap.add_argument("--parallel", type=int, default=6)
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    print(f"load before: {open('/proc/loadavg').read().split()[:3]}", flush=True)
    print("| case | requests | idle RSS | peak RSS | RSS after | answers (status, seconds) |")
    print("|---|---|---|---|---|---|", flush=True)
    for name, (what, path, ctype, body) in cases().items():
        if args.only and name not in args.only:
            continue
        for n in (1, args.parallel):
            idle, peak, after, results = measure(args.bin, path, ctype, body, n)
            answers = ", ".join(f"{s} {t:.1f}" for s, t in sorted(results, key=lambda r: str(r[0])))
            print(f"| {name}: {what} | {n} | {idle} MB | **{peak} MB** | {after} MB | {answers} |", flush=True)
    print(f"load after: {open('/proc/loadavg').read().split()[:3]}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
