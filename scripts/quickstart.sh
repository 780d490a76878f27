#!/usr/bin/env bash
# The main job from nothing: a virtual environment with resnetlab, then ResNet-20 trained on CIFAR-10. On a GPU
# with the paper's recipe (64k iterations, minutes); on a CPU with the CPU recipe (recipes/cpu.toml: 11 epochs,
# the first 6 on smaller images, about 30 minutes on 2 cores, 8 with native bf16); then the test accuracy, also
# with flip test-time augmentation. Extra arguments go to `resnetlab train` (e.g. --recipe paper, --epochs 5).
# Data: $RESNETLAB_DATA if set, else the JPEG copy of CIFAR-10 beside this checkout (../shared/data), else the
# official release, downloaded once into ~/.cache/resnetlab. Run it again and it continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/resnetlab ]; then
    echo "quickstart: creating .venv and installing resnetlab (once)"
    python3 -m venv .venv
    # Pinned like CI: on the project's machines this is a local CPU wheel; elsewhere pip picks the build.
    .venv/bin/python -m pip install --quiet torch==2.13.0
    .venv/bin/python -m pip install --quiet -e .
fi
data="${RESNETLAB_DATA:-}"
if [ -z "$data" ] && [ -f ../shared/data/cifar10-jpeg.tar.xz ]; then
    data=../shared/data/cifar10-jpeg.tar.xz
fi

recipe=""
given_out=""
previous=""
for arg in "$@"; do
    case "$arg" in
        --recipe=*) recipe="${arg#--recipe=}" ;;
        --out=*) given_out="${arg#--out=}" ;;
        *) [ "$previous" = "--recipe" ] && recipe="$arg"; [ "$previous" = "--out" ] && given_out="$arg" ;;
    esac
    previous="$arg"
done
if [ -z "$recipe" ]; then
    if .venv/bin/python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        recipe=paper
        echo "quickstart: a GPU is there, so ResNet-20 trains with the paper's recipe (DRL section 4.2:"
        echo "  64k iterations, 165 epochs; about 3 minutes on an H100, longer on smaller GPUs)."
    else
        recipe=cpu
        echo "quickstart: no GPU found, so ResNet-20 trains with the CPU recipe (resnetlab recipes: cpu):"
        echo "  11 epochs of one-cycle SGD on all 50k images, the first 6 resized to 16 and 24 px (progressive"
        echo "  resizing), the last 5 at 32 px: about 30 minutes on 2 idle cores, about 8 where the processor"
        echo "  computes bf16 natively (AVX512-BF16 or AMX: --amp auto then trains in bf16)."
        echo "  The paper's full recipe (64k iterations: about 8 hours on 2 AVX2 cores, 2 with native bf16):"
        echo "      bash scripts/quickstart.sh --recipe paper"
    fi
fi
out="runs/resnet20-$recipe"
status=0
.venv/bin/resnetlab train --model resnet20 --recipe "$recipe" ${data:+--data "$data"} --out "$out" "$@" || status=$?
if [ "$status" -eq 130 ]; then
    echo "quickstart: stopped; run 'bash scripts/quickstart.sh $*' again to continue where it stopped." >&2
elif [ "$status" -eq 0 ]; then
    out="${given_out:-$out}"
    echo "quickstart: the test set once more, also with left-right flip test-time augmentation:"
    .venv/bin/resnetlab eval "$out" --flip || status=$?  # the data the run recorded, wherever it came from
    echo "quickstart: next: .venv/bin/resnetlab plot $out -o $out/curves.png   |   .venv/bin/resnetlab predict $out IMAGE"
fi
exit "$status"
