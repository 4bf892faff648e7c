#!/usr/bin/env bash
# Download the wheels the GPU machine lacks, for scripts/device_bench.sh (issue 5).
#
# The machine has torch/torchaudio 2.11, transformers 5.x, huggingface-hub 1.x, tokenizers,
# safetensors, pillow, numpy, filelock, regex, requests, httpx -- but no diffusers, no pydub
# (jam.seeds.library -> jam.sound.files imports it at the top) and no open_clip_torch (jam.model.blank builds the
# CLIP tokenizer from the BPE file inside that wheel; it is found, never imported). diffusers'
# importlib_metadata requirement is only imported on Python < 3.8, so it is not carried.
#
# Also fetched, as a fallback: the transformers / huggingface-hub / tokenizers versions jam's
# tests pass with here (pyproject pins transformers < 5). device_bench.sh installs them only if
# the machine's own transformers 5 stack fails to build or load the pipeline.
#
# Versions are the ones installed here, so the device runs what was tested. Wheels are for
# CPython 3.12 on x86-64 (the device's python3). About 22 MB; the directory must be git-ignored.
#   scripts/fetch_wheels.sh [DIR [NAME...]]   (default: wheels/, the packages above)
# scripts/gpu_bundle.sh uses it with its own list.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-wheels}
PY=${PYTHON:-python3}
version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }

names=(diffusers pydub open_clip_torch transformers huggingface_hub tokenizers)
[ $# -gt 1 ] && names=("${@:2}")
specs=()
for name in "${names[@]}"; do
    specs+=("$name==$(version "$name")")
done

mkdir -p "$dest"
"$PY" -m pip download -q --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d "$dest" "${specs[@]}"
printf '%s\n' "${specs[@]}"
du -ch "$dest"/*.whl | tail -1
