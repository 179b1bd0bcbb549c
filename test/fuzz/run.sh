#!/bin/sh
# Build the fuzz targets with clang (libFuzzer + ASan + UBSan) in a separate build directory
# and run each over its committed seeds for its share of a bounded time.
#
#   test/fuzz/run.sh [seconds]        default 60, in total: each of the 5 targets gets a fifth
#
# Per target T (frame, vrrp, http, cluster_link, queue_wire): new corpus entries go to <build>/fuzz-corpus/T (the
# committed seeds in test/fuzz/corpus/T are only read), crashes to <build>/fuzz-artifacts/T/,
# libFuzzer's output to <build>/fuzz-logs/T.log. Every target runs even after one fails, so
# one run reports them all; a summary line per target ends the output, and the exit status
# is non-zero if any target failed (crash, leak, timeout, out of memory).
# MQNODE_FUZZ_BUILD overrides the build directory (default build-fuzz/). If the top-level
# configure fails (a module that does not build with clang yet), test/fuzz is configured
# standalone: it compiles the module sources it fuzzes itself and needs nothing else of
# the tree.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
secs=${1:-60}
build=${MQNODE_FUZZ_BUILD:-$root/build-fuzz}
targets="frame vrrp http cluster_link queue_wire"
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
cmake --build "$build" -j2 --target $(for t in $targets; do printf 'fuzz_%s ' "$t"; done)

# Equal shares of the budget (max_total_time=0 would mean no limit: at least 1 s each).
share=$((secs / $(echo $targets | wc -w)))
[ "$share" -ge 1 ] || share=1
failed=""
summary=""
mkdir -p "$build/fuzz-logs"
for t in $targets; do
  fuzzer=$(find "$build" -name "fuzz_$t" -type f -perm -u+x | head -n 1)
  corpus=$build/fuzz-corpus/$t
  artifacts=$build/fuzz-artifacts/$t/
  log=$build/fuzz-logs/$t.log
  mkdir -p "$corpus" "$artifacts"
  case $t in
    frame) extra="-max_len=65536" ;;
    vrrp) extra="-max_len=8192" ;;  # an IPv6 advert with 255 addresses is 4 KiB
    http) extra="-max_len=8192 -dict=test/fuzz/http.dict" ;;
    cluster_link) extra="-max_len=4096" ;;  # a whole handshake is under 1.2 KiB
    queue_wire) extra="-max_len=4096" ;;
  esac
  echo "== fuzz_$t: ${share}s" >&2
  rc=0
  # shellcheck disable=SC2086  # $extra is a list of options
  "$fuzzer" -max_total_time="$share" -timeout=10 -rss_limit_mb=2048 $extra -print_final_stats=1 \
    -artifact_prefix="$artifacts" "$corpus" "test/fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
  # libFuzzer's last status line ("#N DONE cov: C ft: F corp: ...") and final stats.
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -n 1)
  execs=$(sed -n 's/^stat::number_of_executed_units: //p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: //p' "$log")
  line="fuzz_$t: ${execs:-?} runs, ${rate:-?} exec/s, ${cov:-no coverage line}"
  if [ "$rc" -ne 0 ]; then
    echo "run.sh: fuzz_$t failed (exit $rc); the end of $log:" >&2
    tail -n 80 "$log" >&2
    line="$line, FAILED (exit $rc, inputs in $artifacts)"
    failed="$failed fuzz_$t"
  fi
  summary="$summary$line
"
done
printf '== fuzz summary (%ss each)\n%s' "$share" "$summary" >&2
if [ -n "$failed" ]; then
  echo "run.sh: failed:$failed" >&2
  exit 1
fi
