#!/usr/bin/env bash
# Set up dpiat-bench on a fresh Debian/Ubuntu machine: the Fashion-MNIST Debian package (the offline
# data of the built-in experiment), a Python 3.11 virtual environment in .venv, and the pinned packages.
# Safe to run again; it only does what is missing. Usage: bash setup.sh   (PYTHON=python3.11 to choose)
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else SUDO="none"; fi
  if [ "$SUDO" = none ]; then
    echo "setup.sh: cannot install the Debian package dataset-fashion-mnist (not root, no sudo);" >&2
    echo "  the built-in experiment will fall back to torchvision's download (needs internet)." >&2
  else
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
  fi
fi

PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
  echo "setup.sh: dpiat-bench pins Python 3.11 ($PY is $("$PY" -V 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# torch 2.14.1 / torchvision 0.29.1 are exact pins (CUDA build: the same pins serve GPU clusters).
# The library alone needs only the core dependencies (pip install .); the experiments and the tests need
# the `bench` and `test` extras.
.venv/bin/pip install -q --disable-pip-version-check -e '.[bench,test]'
.venv/bin/python -c 'import dpiat, dpiat.alignment as a; print(f"dpiat {dpiat.__version__} ready (DP backend: {a.BACKEND})")'
