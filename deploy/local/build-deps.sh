#!/usr/bin/env bash
# What the build and the tests need beyond Rust: rdkafka builds its bundled librdkafka from source (Debian's is too old
# to link against), which needs a C and a C++ compiler, make, pkg-config and zlib's headers. Installs the
# missing Debian packages (as root, or through sudo); says clearly what is missing otherwise.
set -euo pipefail

need=()
command -v cc >/dev/null && command -v c++ >/dev/null && command -v make >/dev/null || need+=(build-essential)
command -v pkg-config >/dev/null || need+=(pkg-config)
pkg-config --exists zlib 2>/dev/null || need+=(zlib1g-dev)
# The tests check deploy/systemd/ with systemd-analyze, and make the Mailpit certificate with openssl.
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v openssl >/dev/null || need+=(openssl)
[ ${#need[@]} -eq 0 ] && exit 0

echo "build-deps: installing ${need[*]} (for librdkafka's build and the tests)" >&2
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
if ! { "${sudo[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need[@]}"; } >&2; then
    echo "build-deps: could not install ${need[*]}; install them, then run again" >&2
    exit 1
fi
