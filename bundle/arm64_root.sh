#!/usr/bin/env bash
# Builds (once) an emulated arm64 Debian root with a Python venv holding the aarch64 runtimes.
# Usage: bundle/arm64_root.sh [ROOT]   (default /var/cache/treefuse/arm64-root; needs root)
# Cached outside the repo: a second call only checks it. Steps are idempotent and each one
# writes into a staging path first, so an interrupted run is redone, never half-used.
set -euo pipefail
ROOT=${1:-${ARM64_ROOT:-/var/cache/treefuse/arm64-root}}
WHEELS=${ARM64_WHEELS:-$(dirname "$ROOT")/arm64-wheels}
SUITE=bookworm
# The runtimes a bundle may need; ai-edge-litert 2.x has no aarch64 cp311 wheel, 1.4 has.
RUNTIMES=(numpy==2.4.6 onnxruntime==1.32.0 ai-edge-litert==1.4.0)
# ExecuTorch's Python runtime links libtorch and imports exir: torch and the few pure-Python
# packages that import needs, without deps (pip evaluates markers for the host, not aarch64).
NODEPS=(torch==2.13.0 executorch==1.5.1 torchao==0.18.0)
EXTRA=(filelock typing-extensions sympy networkx jinja2 fsspec mpmath==1.3.0 markupsafe
       flatbuffers ruamel.yaml tabulate tqdm packaging pyyaml)
PLATFORM=(--only-binary=:all: --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64
          --platform manylinux_2_17_aarch64 --platform any --python-version 3.11 --implementation cp)
VENV=/opt/treefuse-venv

die() { echo "arm64_root: error: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "debootstrap and chroot need root; run as root (sudo make arm64-check)"

mirror() {  # the Debian mirror this host already uses (deb822 or one-line sources)
  local m
  m=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -1 || true)
  [ -n "$m" ] || m=$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | head -1 || true)
  echo "${m:-http://deb.debian.org/debian}"
}

host_tools() {
  command -v debootstrap >/dev/null && [ -x /usr/bin/qemu-aarch64-static ] && command -v aarch64-linux-gnu-gcc >/dev/null \
    && return 0
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static binfmt-support \
    debootstrap gcc-aarch64-linux-gnu >/dev/null
}

binfmt() {  # the F flag lets the chroot run arm64 binaries without qemu inside it
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64 || update-binfmts --import qemu-aarch64
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || die "qemu-aarch64 is not registered in binfmt_misc; install qemu-user-static and binfmt-support"
}

debian_root() {
  [ -e "$ROOT/.treefuse-root-done" ] && return 0
  local stage="$ROOT.stage"
  rm -rf "$stage"; mkdir -p "$(dirname "$ROOT")"
  echo "arm64_root: debootstrap $SUITE arm64 into $ROOT (about 10 minutes)"
  debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,python3-pip \
    "$SUITE" "$stage" "$(mirror)" > "$(dirname "$ROOT")/debootstrap.log" 2>&1 \
    || die "debootstrap failed; see $(dirname "$ROOT")/debootstrap.log"
  touch "$stage/.treefuse-root-done"
  rm -rf "$ROOT"; mv "$stage" "$ROOT"
}

wheels() {  # downloaded on the host: pip under emulation is many times slower
  [ -e "$WHEELS/.done" ] && return 0
  mkdir -p "$WHEELS"
  python3 -m pip download -q "${PLATFORM[@]}" -d "$WHEELS" "${RUNTIMES[@]}" "${EXTRA[@]}" \
    && python3 -m pip download -q --no-deps "${PLATFORM[@]}" -d "$WHEELS" "${NODEPS[@]}" \
    || die "pip download of the aarch64 wheels failed; is PyPI reachable?"
  touch "$WHEELS/.done"
}

chroot_venv() {
  [ -e "$ROOT$VENV/.done" ] && return 0
  rm -rf "$ROOT$VENV"
  chroot "$ROOT" python3 -m venv "$VENV"
  # The host's pip unpacks the wheels into the venv (30 s; pip under emulation took 14 min);
  # --no-deps: every wheel needed is there, executorch's full dependency list is not needed to run.
  python3 -m pip install -q --root-user-action=ignore --no-index --no-deps "${PLATFORM[@]}" --platform manylinux_2_27_aarch64 \
    --target "$ROOT$VENV/lib/python3.11/site-packages" "$WHEELS"/*.whl \
    || die "installing the wheels in the arm64 venv failed"
  chroot "$ROOT" "$VENV/bin/python" -c "import numpy, onnxruntime, ai_edge_litert.interpreter" 2>/dev/null \
    || die "the arm64 venv cannot import numpy, onnxruntime and ai_edge_litert; delete $ROOT$VENV and re-run"
  touch "$ROOT$VENV/.done"
}

cuda_stubs() {  # ExecuTorch's runtime imports torch, whose aarch64 wheel links CUDA: stand-ins let it load
  [ -e "$ROOT/opt/cuda-stubs/.done" ] && return 0
  python3 "$(dirname "$0")/cuda_stubs.py" "$ROOT" || die "building the CUDA stand-in libraries failed"
  touch "$ROOT/opt/cuda-stubs/.done"
}

host_tools
binfmt
debian_root
wheels
chroot_venv
cuda_stubs
echo "arm64_root: ready: $ROOT (python: chroot $ROOT $VENV/bin/python)"
