#!/usr/bin/env bash
# Build gpu/ here: everything scripts/gpu_train.sh needs on the GPU machine that the machine
# lacks (issue 6). It has torch/torchaudio 2.11, transformers, safetensors, numpy, pillow and
# tqdm, but no diffusers, pydub or tinysoundfont, no SoundFont, no MiniLM weights, no network.
#
#   gpu/wheels/   diffusers, pydub, tinysoundfont (CPython 3.12, x86-64), at the versions
#                 installed here, so the GPU runs what was tested
#   gpu/TimGM6mb.sf2   a 6 MB General MIDI SoundFont (Debian's timgm6mb-soundfont, GPL-2; not
#                 committed). FluidR3_GM (148 MB) cannot travel: the corpus rendered there
#                 sounds somewhat different from the one rendered here
#   gpu/minilm/   MiniLM packed to the caption vocabulary (jam.model.textenc.write_pack, ~24 MB)
#
# What travels is the working tree + gpu/, at most 64 MiB in all; this prints the total.
# gpu/ must stay git-ignored.   Usage: bash scripts/gpu_bundle.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
rm -rf gpu/wheels
bash scripts/fetch_wheels.sh gpu/wheels diffusers pydub tinysoundfont

if [ ! -f gpu/TimGM6mb.sf2 ]; then
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download timgm6mb-soundfont >/dev/null && dpkg -x ./*.deb x)
    cp "$tmp"/x/usr/share/sounds/sf2/TimGM6mb.sf2 gpu/
    rm -rf "$tmp"
fi

"$PY" - <<'PY'
from jam.model import textenc
from jam.train.captions import caption_vocabulary
print("minilm pack:", textenc.write_pack("gpu/minilm", caption_vocabulary()))
PY

tree=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- | tail -1 | cut -f1)
carried=$(du -sb gpu | cut -f1)
echo "travels: tree $((tree / 1048576)) MiB + gpu/ $((carried / 1048576)) MiB" \
     "= $(((tree + carried) / 1048576)) MiB (limit 64)"
