#!/usr/bin/env bash
# One call on a lent GPU (the device tool): rebuild the toy world with the `gpu` preset, then run the GPU
# benchmark. Everything the call returns lies under $OUT (at most 8 files of <= 16 MiB each), and the
# tar files there are updated after EVERY asset, so a call cut short still returns what was finished.
#
#   OUT=/tmp/out bash scripts/gpu_session.sh                          # on the GPU machine
#   OUT=/tmp/out DEVICE=cpu SCALE=0.01 bash scripts/gpu_session.sh   # a dry run of the same steps on a CPU
#   ASSETS="G_s G_t_cartoon" ...                                     # a subset, in this order
set -uo pipefail
OUT=${OUT:?set OUT}
DEVICE=${DEVICE:-cuda}
SCALE=${SCALE:-1}
WORLD_S=${WORLD_S:-430}
BENCH_S=${BENCH_S:-125}
PY=${PY:-python3}
ASSETS=${ASSETS:-vgg16_toy resnet50_toy id_embedder_toy G_s G_t_cartoon G_t_caricature G_t_anime G_s_inr}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
W=$(mktemp -d)
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, 'cuda', torch.cuda.is_available())"
} 2>&1 | tee "$OUT/env.txt"
end=$((SECONDS + WORLD_S))
for name in $ASSETS; do
  left=$((end - SECONDS))
  [ "$left" -gt 10 ] || { echo "world budget spent before $name" | tee -a "$OUT/world.log"; break; }
  timeout "$left" $PY -m hrinv_nb.toy.build_assets --device "$DEVICE" --preset gpu --out-dir "$W" --quiet \
    --budget-scale "$SCALE" --threads "${THREADS:-8}" --only "$name" 2>&1 | tee -a "$OUT/world.log"
  case $name in
    G_*) tarball=generators.tar ;;
    *) tarball=networks.tar ;;
  esac
  (cd "$W" && ls "$name".safetensors "$name".json >/dev/null 2>&1 && tar -rf "$OUT/$tarball" "$name".safetensors "$name".json)
done
ls -la "$W" "$OUT" | tee -a "$OUT/world.log"
if [ "$BENCH_S" -gt 20 ] && [ -f benchmarks/bench_gpu.py ]; then
  timeout "$BENCH_S" $PY benchmarks/bench_gpu.py --out "$OUT/bench_gpu.json" --budget-s "$((BENCH_S - 15))" \
    ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log"
fi
date -u | tee -a "$OUT/env.txt"
