#!/usr/bin/env bash
# The one script to run on the GPU machine for issue 5 (Riffusion-scale speed). From the repo
# root, after scripts/fetch_wheels.sh (wheels/ must exist here and be git-ignored):
#
#   device run: command "bash scripts/device_bench.sh", carry ["wheels"], timeout_s 480
#
# Planned: ~15 s installs and imports, ~30 s building the random SD-1.5 pipeline (4.1 GB
# fp32 on local disk) and loading it, then benchmarks/bench_gpu.py inside BENCH_BUDGET_S
# (default 330 s, all of it counted from the benchmark's start). It writes to $OUT:
#   bench.log      the whole log (the summary table is its last lines)
#   figures.json   every figure, rewritten after each section (survives a cut-off run)
#   gpu.txt        nvidia-smi before and after (card, driver, clocks, temperature, power)
# Nothing here changes the card's settings.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/device}
mkdir -p "$OUT"
budget=${BENCH_BUDGET_S:-330}
log=$OUT/bench.log
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 DISABLE_TELEMETRY=1  # no network there
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor-cache

query=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw,power.limit
{ nvidia-smi; nvidia-smi --query-gpu=$query --format=csv; } >"$OUT/gpu.txt" 2>&1

site=/tmp/jam-site
install() {
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" "$@"
}
ls wheels/*.whl >/dev/null || { echo "no wheels/: run scripts/fetch_wheels.sh here first"; exit 2; }
install wheels/diffusers-*.whl wheels/pydub-*.whl wheels/open_clip_torch-*.whl || exit 2
export PYTHONPATH=$site:$PWD
python3 - <<'EOF' 2>&1 | tee "$log"
import importlib.metadata as m
print({n: m.version(n) for n in ("torch", "torchaudio", "diffusers", "transformers",
                                  "huggingface_hub", "tokenizers", "safetensors", "numpy")})
EOF

# BENCH_ARGS replaces the workload arguments (e.g. "--arch tiny --device cpu --quick" to try
# this script where there is no GPU).
read -ra args <<<"${BENCH_ARGS:---arch sd15 --device cuda}"
run_bench() {
    timeout $((budget + 90)) python3 benchmarks/bench_gpu.py "${args[@]}" \
        --budget-s "$budget" --json "$OUT/figures.json" 2>&1 | tee -a "$log"
    return "${PIPESTATUS[0]}"
}
run_bench
rc=$?
if [ "$rc" = 3 ]; then
    # The machine's transformers 5 stack could not build or load the pipeline: use the stack
    # jam is tested with here (it shadows the machine's copies through PYTHONPATH).
    echo "== retrying with the pinned transformers/huggingface-hub/tokenizers" | tee -a "$log"
    install wheels/transformers-*.whl wheels/huggingface_hub-*.whl wheels/tokenizers-*.whl
    budget=$((budget - 60))
    run_bench
    rc=$?
fi
nvidia-smi --query-gpu=$query --format=csv >>"$OUT/gpu.txt" 2>&1
exit "$rc"
