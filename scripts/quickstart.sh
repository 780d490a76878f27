#!/usr/bin/env bash
# The main job from nothing: a virtual environment with resnetlab, then ResNet-20 trained on CIFAR-10 with the
# paper's recipe. Extra arguments go to `resnetlab train` (e.g. --epochs 5 for a short run, --device cuda).
# Data: $RESNETLAB_DATA if set, else the JPEG copy of CIFAR-10 beside this checkout (../shared/data), else the
# official release, downloaded once into ~/.cache/resnetlab.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/resnetlab ]; then
    python3 -m venv .venv
    # Pinned like CI: on the project's machines this is a local CPU wheel; elsewhere pip picks the build.
    .venv/bin/python -m pip install --quiet torch==2.13.0
    .venv/bin/python -m pip install --quiet -e .
fi
data="${RESNETLAB_DATA:-}"
if [ -z "$data" ] && [ -f ../shared/data/cifar10-jpeg.tar.xz ]; then
    data=../shared/data/cifar10-jpeg.tar.xz
fi
exec .venv/bin/resnetlab train --model resnet20 --recipe paper ${data:+--data "$data"} --out runs/resnet20-paper "$@"
