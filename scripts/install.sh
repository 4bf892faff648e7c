#!/usr/bin/env bash
# Install everything jam needs on a Debian-like machine: system packages (as root), then Python.
#   ffmpeg                   MP3/OGG/FLAC through pydub
#   chromium, chromium-driver the headless browser the page's tests drive (never a download)
#   fluid-soundfont-gm       FluidR3_GM.sf2 (MIT), the SoundFont `jam corpus` renders with
#   redis-server             sessions past one machine (jam serve --redis); the tests start one
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    need=()
    for pkg in ffmpeg chromium chromium-driver fluid-soundfont-gm redis-server; do
        dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
    done
    if [ ${#need[@]} -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
    fi
fi

PY=${PYTHON:-python3}
# torch and torchaudio must come as a matching pair; keep a working pair (e.g. a GPU image's),
# else install the pair known to work here (PyPI has no CPU-only build of 2.9.1).
if ! "$PY" -c "import torch, torchaudio" >/dev/null 2>&1; then
    "$PY" -m pip install -q "torch==2.9.1" "torchaudio==2.9.1"
fi
# tinysoundfont's only dependency (pyaudio) is for live playback, which jam never uses;
# open_clip_torch is only needed for the CLIP BPE vocabulary file inside its wheel.
"$PY" -m pip install -q --no-deps "tinysoundfont>=0.3" "open_clip_torch>=2.20"
"$PY" -m pip install -q -e ".[dev]"
