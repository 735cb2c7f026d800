#!/usr/bin/env bash
# Installs what Cairn's build needs and a fresh machine may lack.
# A fresh machine has the Rust toolchain, gcc and Python; RocksDB's build
# (librocksdb-sys) needs clang/libclang, and the gRPC code generation needs
# protoc; chaos campaigns need ip, nft and libfaketime; the etcd comparison
# benches need etcd; the console's browser test
# needs chromium and chromedriver. Only missing packages are installed; run as root or with sudo.
set -euo pipefail

command -v cargo >/dev/null || { echo "setup: cargo not found; install the Rust toolchain (rustup) first" >&2; exit 1; }

missing=()
command -v clang >/dev/null || missing+=(clang)
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || ls /usr/lib/*/libclang*.so* >/dev/null 2>&1 || missing+=(libclang-dev)
command -v protoc >/dev/null || missing+=(protobuf-compiler)
# Chaos campaigns (cairn-chaos): network namespaces and partitions (ip,
# nft), and skewed wall clocks (libfaketime).
command -v ip >/dev/null || missing+=(iproute2)
command -v nft >/dev/null || missing+=(nftables)
[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] || missing+=(faketime)
# `cairn bench compare-etcd` / `cairn bench failover` (and their smoke test)
# run a local 3-member etcd: the etcd-server package provides /usr/bin/etcd.
command -v etcd >/dev/null || missing+=(etcd-server)
# The web console's browser test (tests/console.rs) drives Debian's headless
# Chromium through ChromeDriver; fonts-dejavu-core gives screenshots legible text.
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)

if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
