#!/usr/bin/env bash
# Train jam's default model on the GPU machine in one command (issue 6). Here, first:
#   bash scripts/gpu_bundle.sh
# then with the device tool:
#   run: command "bash scripts/gpu_train.sh", carry ["gpu"], timeout_s 560
#
# On the machine: render a fresh corpus with all cores (jam corpus, compact SoundFont), train
# the autoencoder and then the UNet (jam train --device cuda, bf16 autocast, --minutes budget),
# render sample tiles, and put into $OUT (at most 8 files of 16 MiB come back):
#   model.tar.part-aa, -ab   the model folder (fp16 weights): cat model.tar.part-* | tar -x
#   train.log  summary.json  losses.json  loss.png  samples.png
# Planned time (~7.5 min): corpus ~2 min (4000 clips on 16 cores; 0.38 core-s per clip here),
# autoencoder ~1 min, UNet MINUTES (3.5), export and samples ~0.5 min.
# Every size is an environment variable; the CPU dry run:
#   JAM_NO_WHEELS=1 DEVICE=cpu CLIPS=16 WORKERS=2 VAE_STEPS=4 VAE_BATCH=2 BATCH=4 MINUTES=0 \
#     STEPS=3 OUT=/tmp/gpu-dry bash scripts/gpu_train.sh      (tests/train/test_gpu_bundle.py does this)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
WORK=${WORK:-/tmp/jam-gpu}
DEVICE=${DEVICE:-cuda}
CLIPS=${CLIPS:-4000}
WORKERS=${WORKERS:-$(nproc)}
VAE_STEPS=${VAE_STEPS:-2000}
VAE_BATCH=${VAE_BATCH:-64}
BATCH=${BATCH:-128}
LR=${LR:-6e-4}
MINUTES=${MINUTES:-3.5}  # the UNet's time budget; 0: exactly STEPS steps
STEPS=${STEPS:-1000000}
SOUNDFONT=${SOUNDFONT:-gpu/TimGM6mb.sf2}
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
export JAM_TEXT_ENCODER_PACK=${JAM_TEXT_ENCODER_PACK:-$PWD/gpu/minilm}
log=$OUT/train.log
start=$(date +%s)
stamp() { echo "== $(($(date +%s) - start)) s: $*" | tee -a "$log"; }

if [ -z "${JAM_NO_WHEELS:-}" ]; then
    site=/tmp/jam-site
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" gpu/wheels/*.whl || exit 2
    export PYTHONPATH=$site:$PWD
fi
{ nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null || true; } >>"$log"
python3 -c "import torch, diffusers, transformers; print('torch', torch.__version__,
'diffusers', diffusers.__version__, 'transformers', transformers.__version__)" 2>&1 | tee -a "$log"

stamp "corpus: $CLIPS clips, $WORKERS workers"
python3 -m jam.cli corpus "$WORK/corpus" --clips "$CLIPS" --seconds 5.2 --workers "$WORKERS" \
    --music21-fraction 0 --seed 2 --soundfont "$SOUNDFONT" 2>&1 | tail -3 | tee -a "$log"
[ "${PIPESTATUS[0]}" = 0 ] || exit 3

stamp "train on $DEVICE"
python3 -m jam.cli train "$WORK/corpus" -o "$WORK/model" --device "$DEVICE" \
    --vae-steps "$VAE_STEPS" --vae-batch "$VAE_BATCH" --sharpness 1.0 --batch "$BATCH" --lr "$LR" \
    --steps "$STEPS" --minutes "$MINUTES" --checkpoint-every 2000 --sample-every 1000000 \
    2>&1 | tr '\r' '\n' | grep -v "it/s\]$\|s/it\]$" | tee -a "$log"
rc=${PIPESTATUS[0]}
stamp "train exited $rc"

cp "$WORK/model.work/summary.json" "$WORK/model.work/losses.json" "$WORK/model.work/loss.png" \
    "$OUT/" 2>/dev/null
python3 - "$WORK/model.work/samples" "$OUT/samples.png" <<'PY' 2>&1 | tee -a "$log"
import sys
from pathlib import Path
from PIL import Image
tiles = [Image.open(p).convert("L") for p in sorted(Path(sys.argv[1]).glob("*.png"))]
if tiles:
    w, h = tiles[0].size
    sheet = Image.new("L", (w, h * len(tiles) + 4 * (len(tiles) - 1)), 255)
    for i, t in enumerate(tiles):
        sheet.paste(t, (0, i * (h + 4)))
    sheet.save(sys.argv[2])
    print("samples:", [p.name for p in sorted(Path(sys.argv[1]).glob("*.png"))])
PY
if [ -d "$WORK/model" ]; then
    tar -C "$WORK" -cf - model | split -b 15M - "$OUT/model.tar.part-"
fi
stamp "done"; ls -la "$OUT" | tee -a "$log"
exit "$rc"
