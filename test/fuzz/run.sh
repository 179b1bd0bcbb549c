#!/bin/sh
# Build fuzz_frame with clang (libFuzzer + ASan + UBSan) in a separate build directory and
# run it for a bounded time over the committed seeds.
#
#   test/fuzz/run.sh [seconds]        default 60
#
# New corpus entries go to <build>/fuzz-corpus/frame (the committed seeds in
# test/fuzz/corpus/frame are only read); crashes go to <build>/fuzz-artifacts/.
# MQNODE_FUZZ_BUILD overrides the build directory (default build-fuzz/). If the top-level
# configure fails (a module that does not build with clang yet), test/fuzz is configured
# standalone: it compiles the amqp sources itself and needs nothing else.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
secs=${1:-60}
build=${MQNODE_FUZZ_BUILD:-$root/build-fuzz}
cd "$root"

mkdir -p "$build"
if CC=clang CXX=clang++ cmake -S . -B "$build" -DMQNODE_FUZZ=ON -DMQNODE_TESTS=OFF \
     -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build/configure.log" 2>&1; then
  :
else
  echo "run.sh: top-level configure failed (see $build/configure.log); configuring test/fuzz standalone" >&2
  build=$build-standalone
  CC=clang CXX=clang++ cmake -S test/fuzz -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" --target fuzz_frame -j2

fuzzer=$(find "$build" -name fuzz_frame -type f -perm -u+x | head -n 1)
corpus=$build/fuzz-corpus/frame
artifacts=$build/fuzz-artifacts/
mkdir -p "$corpus" "$artifacts"
exec "$fuzzer" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
  -print_final_stats=1 -artifact_prefix="$artifacts" "$corpus" test/fuzz/corpus/frame
