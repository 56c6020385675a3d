#!/usr/bin/env bash
# The archive benchmark (benches/archive.rs) on PostgreSQL: starts Debian's PostgreSQL with a
# data directory in target/archive-bench/pg (kept, like the SQLite file, so the 1 000 000 memos
# are written once), runs `cargo bench --bench archive` against it, and stops the server.
#   benches/archive_pg.sh              # 1 000 000 memos
#   NEEDTAG_BENCH_MEMOS=100000 benches/archive_pg.sh
# The server runs with PostgreSQL's defaults (shared_buffers 128 MB, fsync on) on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bin/initdb" ] || { echo "install PostgreSQL (apt-get install postgresql)" >&2; exit 1; }
dir=$PWD/target/archive-bench/pg
port=${NEEDTAG_BENCH_PG_PORT:-15439}
memos=${NEEDTAG_BENCH_MEMOS:-1000000}
db=needtag_bench_${memos//_/}
run() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir -p "$dir"
[ "$(id -u)" -eq 0 ] && chown postgres "$dir"
if [ ! -f "$dir/data/PG_VERSION" ]; then
  run "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
fi
run "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
trap 'run "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null' EXIT
run "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 ||
  run "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres "$db"
NEEDTAG_BENCH_MEMOS=$memos NEEDTAG_BENCH_ARCHIVE_URL="postgres://postgres@127.0.0.1:$port/$db" \
  cargo bench --locked --bench archive
