#!/usr/bin/env bash
# The one test command: formatting, lints, local services, and every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")"

# librdkafka (the Kafka adapter) is built from source: a C/C++ toolchain, pkg-config and zlib headers.
deploy/local/build-deps.sh

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# The benches that drive the journal and stores directly need the engine's `internals` feature.
cargo clippy -p kassa-engine -p kassa-bench --all-targets --features kassa-engine/internals,kassa-bench/internals -- -D warnings

# Real PostgreSQL, MariaDB, Redis and Kafka for the adapter tests and baselines (see deploy/README.md).
# Every service is started here; a test that needs one that could not be had fails with a message.
rc=0
exports=$(deploy/local/services.sh up) || rc=$?
eval "$exports"
if [ "$rc" -ne 0 ]; then
    echo "ci.sh: some local services are missing (exit $rc, see above); tests needing them will fail" >&2
fi

# The benchmark harness's smoke test drives a release-built kassa, as the benchmarks do.
cargo build --release -p kassa
cargo test --workspace --no-fail-fast

# Every fuzz target for a fixed number of inputs from its kept corpus (fuzz/README.md).
fuzz/run.sh
