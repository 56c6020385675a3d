"""A faster-whisper transcriber that loads the model once and transcribes the files named on
stdin, one per line, printing one JSON line per file: {"file", "ms", "text"}. Used by
compare_faster_whisper.py; "ms" covers transcription only (decoding the file, running the model
and collecting the segments), not loading the model.

    fw_worker.py MODEL_DIR THREADS BEAM [INITIAL_PROMPT]"""
import json
import sys
import time

from faster_whisper import WhisperModel


def main() -> None:
    model_dir, threads, beam = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    prompt = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] else None
    model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=threads, num_workers=1)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        path = line.strip()
        if not path:
            continue
        t = time.perf_counter()
        try:
            segments, _info = model.transcribe(path, language="zh", beam_size=beam, vad_filter=False, initial_prompt=prompt)
            text, error = "".join(s.text for s in segments), None
        except Exception as e:  # a file faster-whisper cannot decode: an empty transcript, said so
            text, error = "", f"{type(e).__name__}: {e}"
        ms = (time.perf_counter() - t) * 1000
        print(json.dumps({"file": path, "ms": ms, "text": text, "error": error}, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
