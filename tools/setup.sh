#!/usr/bin/env bash
# Install what building memscope-trace needs on Debian 12, then configure and
# build the tool (and the demo workload). With --tests, also what the tests
# need, and build every test (tools/test does this).
# Idempotent: packages already present are not touched.
set -euo pipefail
cd "$(dirname "$0")/.."

tests=false
case "${1:-}" in
  --tests) tests=true ;;
  "") ;;
  *) echo "usage: tools/setup.sh [--tests]" >&2; exit 2 ;;
esac

# What the tool's build needs: the compilers (clang builds the BPF programs),
# libbpf and bpftool (the skeletons), the libraries it links, pprof's
# profile.proto for the export, and gzip for the man page.
packages=(
  g++ cmake make pkg-config clang gzip
  libbpf-dev bpftool libelf-dev libdw-dev libiberty-dev zlib1g-dev liblzma-dev
  nlohmann-json3-dev libcli11-dev libzydis-dev
  libprotobuf-dev protobuf-compiler golang-github-google-pprof-dev libcpp-httplib-dev
)
# What the tests add: they run real programs and real consumers.
test_packages=(
  libgtest-dev
  libclang-rt-14-dev # libFuzzer's runtime (clang only recommends it): the fuzz tests
  python3 procps xz-utils
  chromium # the HTML report's test renders it headless
  libjemalloc2 libtcmalloc-minimal4 libmimalloc2.0 # allocators the tests link and preload
  btrfs-progs # a test traces a program whose files are on btrfs (a loop image)
  # The export's consumers: Go's pprof, a Prometheus server, systemd-analyze.
  golang-go prometheus systemd python3-yaml # python3-yaml: the DaemonSet manifest's test reads it
  # The install test: reads the man page, sources the completions, builds the .deb.
  man-db zsh dpkg-dev
)
if $tests; then
  packages+=("${test_packages[@]}")
  # The Rust crate's tests build it with the machine's cargo; Debian's when none.
  if ! command -v cargo >/dev/null && [ ! -x "${HOME:-/root}/.cargo/bin/cargo" ] && [ ! -x /root/.cargo/bin/cargo ]; then
    packages+=(cargo)
  fi
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing packages (${missing[*]}): run as root (sudo)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts the prometheus package's own server (0.0.0.0:9090); the
  # tests run theirs on loopback, so the one installed here is stopped.
  if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
    echo "setup: stopped and disabled the prometheus package's own service (the tests start their own)" >&2
  fi
fi

if $tests; then
  # Every test, or a configure error naming what is missing.
  cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMEMSCOPE_TESTS=ON >/dev/null
  cmake --build build -j"$(nproc)"
else
  # The tool alone (a build directory that has the tests keeps them).
  cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build -j"$(nproc)" --target memscope-trace memscope_docs demo_workload
fi
