#!/usr/bin/env bash
# The project's set-up in one place; README, Dockerfile and CI all call this script.
#
#   ./build.sh run [mqnode args...]   install what is missing, build, run mqnode
#   ./build.sh test                   install what is missing, build with sanitizers,
#                                     run unit, integration, netns and fuzz tests
#   ./build.sh deps [run|test]        only install the Debian packages
#   ./build.sh build                  only build build/app/mqnode (release)
#   ./build.sh image                  build, then the container image mqnode:latest with podman
#   ./build.sh deb                    build, then build/mqnode_<version>_<arch>.deb (dpkg-deb)
#   ./build.sh bench [bench args...]  build the load generator and run bench/run.py
set -euo pipefail
cd "$(dirname "$0")"

BUILD_PKGS=(g++ cmake ninja-build pkg-config libasio-dev nlohmann-json3-dev libsqlite3-dev libcli11-dev
            libfmt-dev doctest-dev libssl-dev libmnl-dev libhttp-parser-dev libraft-dev libuv1-dev)
TEST_PKGS=(python3 python3-pytest python3-pika python3-kombu python3-prometheus-client amqp-tools openssl iproute2 procps
           clang libclang-rt-14-dev keepalived tcpdump libcap2-bin haproxy chromium python3-websocket
           rabbitmq-server  # rabbitmqadmin, for the management API test
           podman runc podman-compose golang-github-containernetworking-plugin-dnsname  # test/image
           systemd)  # systemd-analyze verify/security on the units (test_systemd, test_deb)
# amqplib (npm ci into test/integration/node), for the client tests: Debian's nodejs and npm,
# unless the machine already has a node with its own npm (NodeSource's nodejs bundles npm
# and conflicts with Debian's npm package).
command -v npm >/dev/null 2>&1 || TEST_PKGS+=(nodejs npm)
BENCH_PKGS=(librabbitmq-dev rabbitmq-server keepalived curl haproxy linux-perf valgrind)  # perf, valgrind: bench/README "Per-message cost"

install_pkgs() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing Debian packages: ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

jobs() { nproc 2>/dev/null || echo 2; }

build_release() {
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMQNODE_TESTS=OFF "$@" >/dev/null
  cmake --build build -j "$(jobs)"
}

cmd=${1:-run}
shift || true
case "$cmd" in
  deps)
    install_pkgs "${BUILD_PKGS[@]}"
    case "${1:-}" in
      test) install_pkgs "${TEST_PKGS[@]}" ;;
      bench) install_pkgs "${BENCH_PKGS[@]}" ;;
    esac
    ;;
  build)
    install_pkgs "${BUILD_PKGS[@]}"
    build_release
    ;;
  image)
    install_pkgs "${BUILD_PKGS[@]}" podman
    build_release
    packaging/image/rootfs.sh build/app/mqnode build/image-root
    podman build --format docker -t "${MQNODE_IMAGE:-mqnode:latest}" .
    ;;
  deb)
    install_pkgs "${BUILD_PKGS[@]}"
    build_release
    packaging/deb/build-deb.sh build/app/mqnode build
    ;;
  run)
    install_pkgs "${BUILD_PKGS[@]}"
    build_release
    exec build/app/mqnode "$@"
    ;;
  test)
    install_pkgs "${BUILD_PKGS[@]}" "${TEST_PKGS[@]}"
    # The test build: warnings are errors, ASan+UBSan on everything.
    cmake -S . -B build-test -G Ninja -DCMAKE_BUILD_TYPE=Debug -DMQNODE_WERROR=ON -DMQNODE_SANITIZE=ON \
      -DMQNODE_TESTS=ON >/dev/null
    cmake --build build-test -j "$(jobs)"
    echo "== unit tests" >&2
    ctest --test-dir build-test --output-on-failure
    echo "== release build, for the container image test (test/image)" >&2
    build_release
    echo "== integration tests (pytest, real clients against build-test/app/mqnode)" >&2
    npm ci --prefix test/integration/node --no-audit --no-fund >/dev/null
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
    MQNODE_BIN="$PWD/build-test/app/mqnode" MQNODE_RELEASE_BIN="$PWD/build/app/mqnode" \
      /usr/bin/python3 -m pytest -q -p no:cacheprovider test/integration test/netns test/image
    echo "== fuzz (bounded)" >&2
    test/fuzz/run.sh "${FUZZ_SECONDS:-60}"
    ;;
  bench)
    install_pkgs "${BUILD_PKGS[@]}" "${BENCH_PKGS[@]}"
    build_release -DMQNODE_BENCH=ON
    exec /usr/bin/python3 bench/run.py --mqnode-bin build/app/mqnode --bench-bin build/bench/mqnode-bench "$@"
    ;;
  *)
    echo "usage: $0 run|test|deps|build|image|deb|bench" >&2
    exit 2
    ;;
esac
