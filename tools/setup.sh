#!/usr/bin/env bash
# Install what memscope-trace needs on Debian 12, then configure and build it.
# Idempotent: packages already present are not touched.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  g++ cmake make pkg-config clang
  libclang-rt-14-dev # libFuzzer's runtime (clang only recommends it): the report reader's fuzz test
  libbpf-dev bpftool libelf-dev libdw-dev libiberty-dev zlib1g-dev liblzma-dev xz-utils
  nlohmann-json3-dev libcli11-dev libgtest-dev libzydis-dev python3 procps
  chromium # the HTML report's test renders it headless
  libjemalloc2 libtcmalloc-minimal4 libmimalloc2.0 # allocators the tests link and preload
  btrfs-progs # a test traces a program whose files are on btrfs (a loop image)
  # Export: pprof's profile.proto and libprotobuf, cpp-httplib; and the real
  # consumers the tests run: Go's pprof, a Prometheus server, systemd-analyze.
  libprotobuf-dev protobuf-compiler golang-github-google-pprof-dev libcpp-httplib-dev
  golang-go prometheus systemd python3-yaml # python3-yaml: the DaemonSet manifest's test reads it
)
# The Rust crate's example is built with the machine's cargo; Debian's when none.
if ! command -v cargo >/dev/null && [ ! -x "${HOME:-/root}/.cargo/bin/cargo" ] && [ ! -x /root/.cargo/bin/cargo ]; then
  packages+=(cargo)
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

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
