#!/bin/sh
# Install scaltra's build dependencies from Debian/Ubuntu packages (idempotent).
#
#   sh cmake/install-deps.sh test   # for `cmake --workflow --preset dev` (clang) and dev-gcc
#   sh cmake/install-deps.sh demo   # everything needed to build and run the demos
#   sh cmake/install-deps.sh bench  # the demos' and libtorch, for bench/peers
#   sh cmake/install-deps.sh fuzz   # everything needed for `cmake --workflow --preset fuzz`
#   sh cmake/install-deps.sh tsan   # everything needed for `cmake --workflow --preset tsan`
#
# Only packages that are not already installed are passed to apt-get.
set -eu

# --- Package lists: extend here -------------------------------------------
SCALTRA_DEPS_TEST="cmake g++ make clang libomp-14-dev libeigen3-dev catch2 libbenchmark-dev zlib1g-dev libopenblas-dev dataset-fashion-mnist gnuplot-nox libopenmpi-dev openmpi-bin"
SCALTRA_DEPS_DEMO="cmake g++ make libeigen3-dev libbenchmark-dev zlib1g-dev libopenblas-dev dataset-fashion-mnist gnuplot-nox"
SCALTRA_DEPS_BENCH="$SCALTRA_DEPS_DEMO libtorch-dev"
SCALTRA_DEPS_FUZZ="cmake make clang libclang-rt-14-dev libeigen3-dev zlib1g-dev"
SCALTRA_DEPS_TSAN="cmake make clang libclang-rt-14-dev libomp-14-dev libeigen3-dev catch2 zlib1g-dev"
# ---------------------------------------------------------------------------

usage() {
    echo "usage: sh cmake/install-deps.sh demo|test|bench|fuzz|tsan" >&2
    exit 2
}

[ "$#" -eq 1 ] || usage
case "$1" in
    test) wanted=$SCALTRA_DEPS_TEST ;;
    demo) wanted=$SCALTRA_DEPS_DEMO ;;
    bench) wanted=$SCALTRA_DEPS_BENCH ;;
    fuzz) wanted=$SCALTRA_DEPS_FUZZ ;;
    tsan) wanted=$SCALTRA_DEPS_TSAN ;;
    *) usage ;;
esac

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "scaltra: dpkg-query not found; this script supports Debian/Ubuntu only." >&2
    echo "scaltra: please install the equivalent of: $wanted" >&2
    exit 1
fi

missing=""
for pkg in $wanted; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [ "$status" != "install ok installed" ]; then
        missing="${missing:+$missing }$pkg"
    fi
done

if [ -z "$missing" ]; then
    echo "scaltra: all build dependencies present"
    exit 0
fi

echo "scaltra: installing missing packages: $missing"

if [ "$(id -u)" -eq 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1; then
    as_root="sudo"
else
    echo "scaltra: not root and sudo is not available." >&2
    echo "scaltra: please install as root: apt-get install $missing" >&2
    exit 1
fi

# $as_root and $missing are intentionally unquoted (word splitting).
$as_root apt-get update
$as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends $missing
echo "scaltra: build dependencies installed"
