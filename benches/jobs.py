#!/usr/bin/env python3
"""Memo jobs: throughput (jobs per minute) with 1 and 2 transcription workers, and the end-to-end
latency of a job (202 at the client → its signed webhook at the receiver) at a steady arrival
rate below capacity.

Runs the release binary (`cargo build --release` first) with a fresh SQLite file per run, and a
webhook receiver in this script that checks every signature. Standard library only.

    python3 benches/jobs.py                 # 24 jobs per throughput run, 30 at the steady rate
    python3 benches/jobs.py --jobs 48 --steady 60 --load 0.6

The audio is the four 4.2-second speech fixtures, round robin. With 2 workers it also times
/v1/memos alone and beside a backlog of 24 queued jobs (how the workers are shared). Results go to stdout; copy them
to docs/benchmarks.md with the machine's load (`cat /proc/loadavg`).
"""

import argparse
import hashlib
import hmac
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "needtag")
KEY = "bench-key-000000000001"
SECRET = "bench-webhook-secret-0001"
FIXTURES = [
    "aishell_S0724W0121.wav",
    "aishell_S0764W0121.wav",
    "s0764_clipped.wav",
    "s0764_dc_offset.wav",
]


class Receiver(http.server.BaseHTTPRequestHandler):
    arrived = {}  # job_id -> monotonic time of the first signed, accepted delivery
    bad = 0
    lock = threading.Lock()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        parts = dict(p.split("=", 1) for p in self.headers.get("needtag-signature", "").split(",") if "=" in p)
        want = hmac.new(SECRET.encode(), f"{parts.get('t', '')}.".encode() + body, hashlib.sha256).hexdigest()
        ok = hmac.compare_digest(want, parts.get("v1", ""))
        with Receiver.lock:
            if ok:
                job = json.loads(body)["job_id"]
                Receiver.arrived.setdefault(job, time.monotonic())
            else:
                Receiver.bad += 1
        self.send_response(200 if ok else 401)
        self.end_headers()

    def log_message(self, *args):
        pass


def start_receiver():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{srv.server_address[1]}/hook"


def start_service(workers, hook, tmp):
    cfg = os.path.join(tmp, f"w{workers}.toml")
    with open(cfg, "w") as f:
        f.write(f"""[server]
bind = "127.0.0.1:0"
workers = {workers}
api_keys = [{{ key = "{KEY}", scopes = ["tag"], name = "bench" }}]
[archive]
path = "{tmp}/w{workers}.sqlite"
[webhook]
url = "{hook}"
secret = "{SECRET}"
""")
    proc = subprocess.Popen([BIN, "--config", cfg, "serve"], stdout=subprocess.PIPE,
                            stderr=open(os.path.join(tmp, f"w{workers}.log"), "w"), text=True, cwd=ROOT)
    base = None
    for line in proc.stdout:
        if line.startswith("needtag listening on "):
            base = line.split()[3]
            break
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(base + "/readyz") as r:
                if r.status == 200:
                    return proc, base
        except Exception:
            pass
        time.sleep(0.3)
    proc.kill()
    sys.exit("the service did not become ready")


def submit(base, audio):
    req = urllib.request.Request(base + "/v1/jobs", data=audio, method="POST",
                                 headers={"authorization": f"Bearer {KEY}", "content-type": "audio/wav"})
    with urllib.request.urlopen(req) as r:
        assert r.status == 202
        return json.loads(r.read())["job_id"]


def wait_delivered(ids, timeout=3600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with Receiver.lock:
            if all(i in Receiver.arrived for i in ids):
                return
        time.sleep(0.05)
    sys.exit("jobs were not all delivered in time")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=24, help="jobs per throughput run")
    ap.add_argument("--steady", type=int, default=30, help="jobs in the steady-rate run")
    ap.add_argument("--load", type=float, default=0.6, help="steady arrival rate as a share of the 2-worker throughput")
    args = ap.parse_args()
    audio = [open(os.path.join(ROOT, "fixtures", "audio", f), "rb").read() for f in FIXTURES]
    hook = start_receiver()
    tmp = tempfile.mkdtemp(prefix="needtag-bench-jobs-")
    print(f"machine: {os.cpu_count()} cores; load before: {open('/proc/loadavg').read().strip()}")
    rates = {}
    for workers in (1, 2):
        proc, base = start_service(workers, hook, tmp)
        try:
            t0 = time.monotonic()
            ids = [submit(base, audio[i % len(audio)]) for i in range(args.jobs)]
            accepted = time.monotonic() - t0
            wait_delivered(ids)
            took = max(Receiver.arrived[i] for i in ids) - t0
            rates[workers] = args.jobs / took * 60
            print(f"workers={workers}: {args.jobs} jobs accepted in {accepted:.2f} s, all delivered after "
                  f"{took:.1f} s -> {rates[workers]:.1f} jobs/min; load: {open('/proc/loadavg').read().strip()}")
            if workers == 2:
                # /v1/memos beside a backlog of jobs: alone, then with 24 jobs queued behind it.
                def memo(i):
                    req = urllib.request.Request(base + "/v1/memos", data=audio[i % len(audio)], method="POST",
                                                 headers={"authorization": f"Bearer {KEY}", "content-type": "audio/wav"})
                    t = time.monotonic()
                    with urllib.request.urlopen(req) as r:
                        assert r.status == 200
                        r.read()
                    return time.monotonic() - t
                alone = [memo(i) for i in range(5)]
                backlog = [submit(base, audio[i % len(audio)]) for i in range(24)]
                beside = [memo(i) for i in range(5)]
                wait_delivered(backlog)
                print(f"/v1/memos alone: median {statistics.median(alone):.2f} s, max {max(alone):.2f} s; "
                      f"beside 24 queued jobs: median {statistics.median(beside):.2f} s, max {max(beside):.2f} s; "
                      f"load: {open('/proc/loadavg').read().strip()}")
                rate = rates[2] / 60 * args.load
                lat = []
                sent = []
                start = time.monotonic()
                for i in range(args.steady):
                    due = start + i / rate
                    time.sleep(max(0.0, due - time.monotonic()))
                    sent.append((submit(base, audio[i % len(audio)]), time.monotonic()))
                wait_delivered([j for j, _ in sent])
                lat = [Receiver.arrived[j] - t for j, t in sent]
                print(f"steady: {args.steady} jobs at {rate * 60:.1f}/min ({args.load:.0%} of the 2-worker rate), "
                      f"202 -> webhook seconds: p50 {pct(lat, 50):.2f}, p90 {pct(lat, 90):.2f}, "
                      f"p99 {pct(lat, 99):.2f}, max {max(lat):.2f}, mean {statistics.mean(lat):.2f}; "
                      f"load: {open('/proc/loadavg').read().strip()}")
        finally:
            proc.terminate()
            proc.wait()
    print(f"bad signatures: {Receiver.bad}")


if __name__ == "__main__":
    main()
