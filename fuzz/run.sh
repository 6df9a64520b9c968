#!/usr/bin/env bash
# Runs every fuzz target for a fixed number of inputs (CI), or for as long as asked:
#   fuzz/run.sh                      each target, FUZZ_RUNS inputs (default per target below), from its corpus
#   fuzz/run.sh http_request 3600    one target for an hour (seconds), new inputs kept in its corpus
# Needs cargo-fuzz (installed from crates.io if missing) and a nightly toolchain's libFuzzer flags: the
# machine's nightly when rustup has one, else the stable compiler with RUSTC_BOOTSTRAP=1 (said so).
# Builds into $KASSA_CACHE_DIR/fuzz-target, outside the clone. A crash leaves its input in
# fuzz/artifacts/<target>/ and fails the run.
set -euo pipefail
cd "$(dirname "$0")"

cache="${KASSA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kassa}"
export CARGO_TARGET_DIR="$cache/fuzz-target"

# Inputs per target in CI: the decoders are cheap; a route or RPC is a real request on a real engine;
# a model sequence opens two engines.
declare -A RUNS=([journal_frame]=20000 [event_decode]=20000 [records]=20000 [http_request]=4000 [grpc_request]=4000 [model_sequence]=40)
TARGETS=(journal_frame event_decode records http_request grpc_request model_sequence)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz from crates.io" >&2
    cargo install cargo-fuzz --locked >&2
fi
# AddressSanitizer watches the unsafe code underneath (rkyv's validation, allocators); its runtime comes
# with a nightly toolchain.
toolchain=() sanitizer=address
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz: no nightly toolchain here; using the stable compiler with RUSTC_BOOTSTRAP=1, no sanitizer" >&2
    export RUSTC_BOOTSTRAP=1
    sanitizer=none
else
    toolchain=(+nightly)
fi
fuzz() { local verb=$1; shift; cargo "${toolchain[@]}" fuzz "$verb" --sanitizer "$sanitizer" "$@"; }

run_target() {
    local target=$1 seconds=${2:-} corpus="corpus/$1" scratch
    mkdir -p "$corpus" "artifacts/$target"
    if [[ -n $seconds ]]; then
        # Long runs grow the kept corpus (minimise it with `cargo fuzz cmin` before committing).
        fuzz run "$target" "$corpus" -- -max_total_time="$seconds" -artifact_prefix="artifacts/$target/"
    else
        # CI: new inputs go to a scratch folder, so the repository's corpus stays as committed.
        scratch=$(mktemp -d)
        fuzz run "$target" "$scratch" "$corpus" -- -runs="${FUZZ_RUNS:-${RUNS[$target]}}" -seed=1 \
            -artifact_prefix="artifacts/$target/" -print_final_stats=1
        rm -rf "$scratch"
    fi
}

if [[ $# -gt 0 ]]; then
    run_target "$1" "${2:-}"
else
    for t in "${TARGETS[@]}"; do
        echo "fuzz: $t" >&2
        run_target "$t"
    done
fi
