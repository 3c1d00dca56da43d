#!/usr/bin/env bash
# What this repository runs in one call on a lent GPU machine (one H100/H200, 16 cores, torch + CUDA, no ray;
# see ../shared/PLATFORM.md): the trainings a 2-core CPU cannot afford, then the GPU throughput table.
#   bash loadtest/gpu_session.sh            # results land as a few files in $OUT (default /tmp/gpu_session)
# 1. data, at once: the iqa benchmark (CPU processes) and the Navier-Stokes train/val solves (float64, GPU);
# 2. trainings, at once, one process each: PMT-IQA progressive vs plain x seeds 0-2 (models.iqa.evaluate) and
#    KNO / FNO / KNO-CNN on NS x seeds 0-2 (models.koopman.train, 5000 iterations of batch 16);
# 3. python -m loadtest.gpu_bench (fp32 / fp16 / CPU figure per model and batch).
# Every stage has a deadline so that the call ends inside the device's time limit with what finished.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu_session}
WORK=${WORK:-/tmp/gpu_work}
TRAIN_DEADLINE=${TRAIN_DEADLINE:-400}   # seconds from the start by which every training must have ended
BENCH_SECONDS=${BENCH_SECONDS:-110}
KNO_ITERS=${KNO_ITERS:-5000}
IQA_PROFILE=${IQA_PROFILE:-gpu2}
IQA_SEEDS=${IQA_SEEDS:-0 1 2}   # e.g. "3 4 5" adds seeds to the committed ones
DEVICE=${DEVICE:-cuda}   # cpu only to smoke-test this script
RUN_KOOPMAN=${RUN_KOOPMAN:-1} RUN_BENCH=${RUN_BENCH:-1}   # 0 skips that part
mkdir -p "$OUT" "$WORK/logs" "$WORK/iqa_report" "$WORK/iqa_weights"
export IQA_CACHE=${IQA_CACHE:-$WORK/iqa_cache} KOOPMAN_DATA=${KOOPMAN_DATA:-$WORK/koopman_data}
START=$(date +%s)
left() { echo $(( TRAIN_DEADLINE - ($(date +%s) - START) )); }
stamp() { echo "[gpu_session +$(( $(date +%s) - START ))s] $*"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$WORK/logs/nvidia-smi.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

stamp "data"
$PY -c "from models.iqa.data import make_benchmark; make_benchmark(12)" > "$WORK/logs/iqa_data.log" 2>&1 &
IQA_DATA=$!
[ "$RUN_KOOPMAN" = 0 ] || [ -f "$KOOPMAN_DATA/ns_nu1e-3_val_64.pt" ] || timeout "$(left)" $PY -m models.koopman.data ns --device "$DEVICE" > "$WORK/logs/ns_data.log" 2>&1
stamp "ns data rc=$?"; tail -2 "$WORK/logs/ns_data.log"

stamp "koopman trainings"
for model in kno fno kno-cnn; do
  [ "$RUN_KOOPMAN" = 0 ] && break
  for seed in 0 1 2; do
    timeout "$(left)" $PY -m models.koopman.train --problem ns --model $model --seed $seed --device "$DEVICE" \
      --iters "$KNO_ITERS" --batch 16 --eval-every 250 > "$WORK/logs/ns_${model}_seed${seed}.log" 2>&1 &
  done
done

wait $IQA_DATA; stamp "iqa data rc=$?"; tail -2 "$WORK/logs/iqa_data.log"
# The benchmark is regenerated here (227 MB does not travel): its digest shows whether it equals the local cache.
$PY -c "from models.iqa.data import make_benchmark, digest; print('iqa benchmark digest', digest(make_benchmark()))"
cp models/iqa/report/backbone_timing.json "$WORK/iqa_report/"
# shellcheck disable=SC2086  # IQA_SEEDS is a list of numbers
timeout "$(left)" $PY -m models.iqa.evaluate --profile "$IQA_PROFILE" --seeds $IQA_SEEDS --device "$DEVICE" --jobs 6 --save-all \
  --report "$WORK/iqa_report" --weights "$WORK/iqa_weights" > "$WORK/logs/iqa_evaluate.log" 2>&1
stamp "iqa evaluate rc=$?"
wait
stamp "trainings ended"
for f in "$WORK"/logs/ns_*.log; do echo "$(basename "$f"): $(grep -c 'val rel L2' "$f") checkpoints, last: $(grep 'val rel L2' "$f" | tail -1)"; done

[ "$RUN_BENCH" = 0 ] || timeout "$BENCH_SECONDS" $PY -m loadtest.gpu_bench --seconds 0.5 --json "$WORK/gpu_bench.json" > "$WORK/logs/gpu_bench.log" 2>&1
stamp "gpu_bench rc=$?"

# At most 8 files of 16 MiB come back: one archive per group.
tar -czf "$OUT/iqa_report.tar.gz" -C "$WORK" iqa_report
for mode in progressive plain; do tar -czf "$OUT/iqa_$mode.tar.gz" -C "$WORK/iqa_weights" $(cd "$WORK/iqa_weights" && ls pmt_iqa_${mode}_*); done
for model in kno fno kno_cnn; do
  [ "$RUN_KOOPMAN" = 0 ] && break
  tar -czf "$OUT/ns_${model}.tar.gz" -C models/koopman/weights $(cd models/koopman/weights && ls ns_${model}_seed* 2>/dev/null)
done
cp "$WORK/gpu_bench.json" "$OUT/" 2>/dev/null
tar -czf "$OUT/logs.tar.gz" -C "$WORK" logs
ls -la "$OUT"
stamp "done"
tail -40 "$WORK/logs/gpu_bench.log"
