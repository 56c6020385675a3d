#!/usr/bin/env python3
"""Scaled-out memo jobs (`queue.url`): throughput (jobs per minute) with 1 and 2 `needtag worker`
processes behind one `needtag serve`, and the end-to-end latency of a job (202 at the client →
its signed webhook at the receiver) at a steady arrival rate below the 2-worker capacity.

Starts everything itself on loopback: Debian's `nats-server -js` (temporary store), a
PostgreSQL server from Debian's binaries (temporary data directory, trust auth; as root it runs
as the `postgres` user), the release binary (`cargo build --release` first). Each run gets a
fresh database and a fresh NATS server. Each worker process has `server.workers = 1` (one
whisper state, one job at a time). Standard library only.

    python3 benches/jobs_nats.py                    # 24 jobs per throughput run, 30 at the steady rate
    python3 benches/jobs_nats.py --jobs 48 --steady 60 --load 0.6

The audio is the four 4.2-second speech fixtures of benches/jobs.py, round robin. Results go to
stdout with the load average; copy them to docs/benchmarks.md.
"""

import argparse
import glob
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jobs as embedded  # noqa: E402  (the receiver, submit, percentile of benches/jobs.py)

ROOT = embedded.ROOT
BIN = embedded.BIN
KEY = embedded.KEY
SECRET = embedded.SECRET


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{what} never listened on {port}")


class Postgres:
    def __init__(self, tmp):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
        if not bins:
            sys.exit("PostgreSQL is not installed (apt-get install postgresql)")
        self.bin = bins[-1]
        self.dir = os.path.join(tmp, "pg")
        os.makedirs(self.dir)
        self.user = None
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            self.user = (pw.pw_uid, pw.pw_gid)
            os.chown(self.dir, *self.user)
        self.port = free_port()
        self._run([os.path.join(self.bin, "initdb"), "-D", self.dir + "/data", "-U", "postgres",
                   "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"])
        self.proc = subprocess.Popen(
            [os.path.join(self.bin, "postgres"), "-D", self.dir + "/data", "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "pg.log"), "w"),
            preexec_fn=self._demote)
        wait_port(self.port, "postgres")
        time.sleep(1)

    def _demote(self):
        if self.user:
            os.setgid(self.user[1])
            os.setuid(self.user[0])

    def _run(self, cmd):
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, preexec_fn=self._demote)

    def database(self, name):
        for _ in range(50):
            r = subprocess.run([os.path.join(self.bin, "psql"), "-h", "127.0.0.1", "-p", str(self.port),
                                "-U", "postgres", "-c", f"CREATE DATABASE {name}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if r.returncode == 0:
                return f"postgres://postgres@127.0.0.1:{self.port}/{name}"
            time.sleep(0.2)
        sys.exit(f"could not create database {name}")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def start_nats(tmp, tag):
    port = free_port()
    store = os.path.join(tmp, f"nats-{tag}")
    proc = subprocess.Popen(["/usr/sbin/nats-server", "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", store],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, f"nats-{tag}.log"), "w"))
    wait_port(port, "nats-server")
    return proc, f"nats://127.0.0.1:{port}"


def write_config(tmp, tag, pg_url, nats_url, hook):
    cfg = os.path.join(tmp, f"{tag}.toml")
    with open(cfg, "w") as f:
        f.write(f"""[server]
bind = "127.0.0.1:0"
workers = 1
api_keys = [{{ key = "{KEY}", scopes = ["tag"], name = "bench" }}]
[archive]
url = "{pg_url}"
[queue]
url = "{nats_url}"
[webhook]
url = "{hook}"
secret = "{SECRET}"
""")
    return cfg


def start(cfg, command, log, ready):
    proc = subprocess.Popen([BIN, "--config", cfg, command], stdout=subprocess.PIPE,
                            stderr=open(log, "w"), text=True, cwd=ROOT)
    rest = None
    for line in proc.stdout:
        if line.startswith(ready):
            rest = line[len(ready):].split()
            break
    if rest is None:
        sys.exit(f"needtag {command} stopped; see {log}")
    import threading
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, rest


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=24, help="jobs per throughput run")
    ap.add_argument("--steady", type=int, default=30, help="jobs in the steady-rate run")
    ap.add_argument("--load", type=float, default=0.6, help="steady arrival rate as a share of the 2-worker throughput")
    args = ap.parse_args()
    audio = [open(os.path.join(ROOT, "fixtures", "audio", f), "rb").read() for f in embedded.FIXTURES]
    hook = embedded.start_receiver()
    tmp = tempfile.mkdtemp(prefix="needtag-bench-nats-")
    if os.geteuid() == 0:
        os.chmod(tmp, 0o755)
    print(f"machine: {os.cpu_count()} cores; load before: {open('/proc/loadavg').read().strip()}")
    pg = Postgres(tmp)
    rates = {}
    try:
        for n in (1, 2):
            tag = f"w{n}"
            nats, nats_url = start_nats(tmp, tag)
            cfg = write_config(tmp, tag, pg.database(tag), nats_url, hook)
            procs = []
            try:
                api, rest = start(cfg, "serve", os.path.join(tmp, f"{tag}-api.log"), "needtag listening on ")
                procs.append(api)
                base = rest[0]
                deadline = time.time() + 300
                while True:
                    try:
                        import urllib.request
                        with urllib.request.urlopen(base + "/readyz") as r:
                            if r.status == 200:
                                break
                    except Exception:
                        pass
                    if time.time() > deadline:
                        sys.exit("the API never became ready")
                    time.sleep(0.3)
                for i in range(n):
                    w, _ = start(cfg, "worker", os.path.join(tmp, f"{tag}-worker{i}.log"), "needtag worker ready")
                    procs.append(w)
                t0 = time.monotonic()
                ids = [embedded.submit(base, audio[i % len(audio)]) for i in range(args.jobs)]
                accepted = time.monotonic() - t0
                embedded.wait_delivered(ids)
                took = max(embedded.Receiver.arrived[i] for i in ids) - t0
                rates[n] = args.jobs / took * 60
                print(f"worker processes={n}: {args.jobs} jobs accepted in {accepted:.2f} s "
                      f"({accepted / args.jobs * 1000:.0f} ms each: PG commit + JetStream publish ack), "
                      f"all delivered after {took:.1f} s -> {rates[n]:.1f} jobs/min; "
                      f"load: {open('/proc/loadavg').read().strip()}")
                if n == 2:
                    rate = rates[2] / 60 * args.load
                    sent = []
                    start_t = time.monotonic()
                    for i in range(args.steady):
                        due = start_t + i / rate
                        time.sleep(max(0.0, due - time.monotonic()))
                        sent.append((embedded.submit(base, audio[i % len(audio)]), time.monotonic()))
                    embedded.wait_delivered([j for j, _ in sent])
                    lat = [embedded.Receiver.arrived[j] - t for j, t in sent]
                    pct = embedded.pct
                    print(f"steady: {args.steady} jobs at {rate * 60:.1f}/min ({args.load:.0%} of the 2-worker rate), "
                          f"202 -> webhook seconds: p50 {pct(lat, 50):.2f}, p90 {pct(lat, 90):.2f}, "
                          f"p99 {pct(lat, 99):.2f}, max {max(lat):.2f}, mean {statistics.mean(lat):.2f}; "
                          f"load: {open('/proc/loadavg').read().strip()}")
            finally:
                for p in reversed(procs):
                    p.terminate()
                for p in procs:
                    p.wait()
                nats.terminate()
                nats.wait()
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"bad signatures: {embedded.Receiver.bad}")


if __name__ == "__main__":
    main()
