#!/usr/bin/env bash
# Kassa's benchmarks in one command: starts the local services (PostgreSQL, Redis, ...), builds a release
# kassa and kassa-bench, runs the references and the workloads against a fresh Kassa on a temporary data
# directory, writes benches/results/<date>.json and .md, and (full runs) adds the W6 engine benchmarks.
#
#   benches/run.sh            full run (about 6-8 minutes on 2 cores)
#   benches/run.sh --quick    tiny sizes, short measurements (about a minute once built)
#   benches/run.sh --scale    also the scale run: 1M products + 1M baskets, memory, W8 restart (+5-10 min)
#   benches/run.sh --test     the bench crate's own tests, smoke test included (needs the services too)
#   benches/run.sh -- ARGS    extra arguments for `kassa-bench run` (see `kassa-bench run --help`)
set -euo pipefail

cd "$(dirname "$0")/.."
# The build cache: $CARGO_TARGET_DIR if set, else the workspace's own target/.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

quick=0
test=0
engine=1
scale=0
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; engine=0 ;;
    --test) test=1 ;;
    --no-engine) engine=0 ;;
    --scale) scale=1000000 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

rc=0
exports="$(deploy/local/services.sh up)" || rc=$?
eval "$exports"
if [ -z "${KASSA_PG_URL:-}" ] || [ -z "${KASSA_REDIS_URL:-}" ]; then
  echo "run.sh: PostgreSQL and Redis are needed for the references (services.sh exit $rc)" >&2
  exit 1
fi
[ "$rc" -eq 0 ] || echo "run.sh: some services are missing (exit $rc); PostgreSQL and Redis are up, continuing" >&2

if [ "$test" -eq 1 ]; then
  cargo build --release -p kassa
  exec cargo test -p kassa-bench
fi

cargo build --release -p kassa -p kassa-bench
if [ "$engine" -eq 1 ]; then
  cargo bench -p kassa-bench --bench engine --no-run
fi

out=benches/results
mkdir -p "$out"
args=(run --kassa-bin "$CARGO_TARGET_DIR/release/kassa" --out-dir "$out")
[ "$quick" -eq 1 ] && args+=(--quick)
[ "$scale" -gt 0 ] && args+=(--scale "$scale")
log="$(mktemp)"
"$CARGO_TARGET_DIR/release/kassa-bench" "${args[@]}" "${extra[@]}" | tee "$log"
result="$(sed -n 's/^result: //p' "$log" | tail -1)"
rm -f "$log"
[ -n "$result" ] || { echo "run.sh: kassa-bench wrote no result" >&2; exit 1; }

if [ "$engine" -eq 1 ]; then
  echo "run.sh: W6 engine benchmarks (criterion)" >&2
  cargo bench -p kassa-bench --bench engine
  "$CARGO_TARGET_DIR/release/kassa-bench" import-engine --criterion-dir "$CARGO_TARGET_DIR/criterion" --result "$result"
  cat "${result%.json}.md"
fi
echo "run.sh: $result"
