#!/usr/bin/env bash
# The GPU checks in one call, sized for about 9 minutes on one H100/H200:
#   1. the GPU tests (bf16 + compiled inference, no host-device sync in a training step, speed
#      switches, BatchNorm folding, loss guard);
#   2. ResNet-50 throughput: timm eager/compiled, ours eager/compiled/folded+CUDA graphs, ours
#      through the Lightning Trainer (batch 256, 224x224, bf16, channels-last);
#   3. ResNet-18, VGG-16, GoogLeNet, EfficientNet-B0 the same way, eager and through Lightning;
#   4. train.py end to end on the GPU (segmentation: compile, channels-last, bf16, fused AdamW),
#      then the same run as DDP and as FSDP on one device.
# Each step has its own time limit and log; a step that fails or runs out of time does not stop
# the others. Logs, JSON and the updated RESULTS.md land in OUT_DIR (default: $OUT, else
# ./gpu_check_out); the last lines printed are a summary and the throughput tables.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]
# A dry run of the plumbing on a CPU (FSDP needs a GPU and fails there):
#   DEVICE=cpu BATCH=4 SIZE=64 PRECISION=32 BIG=resnet18 OTHERS=googlenet \
#       bash benchmarks/gpu_check.sh /tmp/check
set -uo pipefail

out=${1:-${OUT:-gpu_check_out}}
mkdir -p "$out"
out=$(cd "$out" && pwd)
device=${DEVICE:-cuda}
batch=${BATCH:-256}
size=${SIZE:-224}
precision=${PRECISION:-bf16}
big=${BIG:-resnet50}
others=${OTHERS:-resnet18 vgg16 googlenet efficientnet_b0}
trainer=$([ "$device" = cuda ] && echo gpu || echo cpu)
ddp=$([ "$device" = cuda ] && echo ddp || echo ddp_cpu)
export CVTASKS_CACHE=${CVTASKS_CACHE:-$out/cache}
export PYTHONUNBUFFERED=1
summary="$out/summary.txt"
: >"$summary"

step() {  # step NAME SECONDS COMMAND...: run it with a limit, log it, note status and time
    local name=$1 limit=$2 start rc
    shift 2
    start=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1
    rc=$?
    printf '%-14s rc=%-3s %4ss  (limit %ss)\n' "$name" "$rc" "$(($(date +%s) - start))" "$limit" \
        >>"$summary"
}

common=(--device "$device" --batch-size "$batch" --image-size "$size" --precision "$precision"
    --channels-last)
run=(task=segmentation trainer.max_epochs=2 test=false logger=none callbacks.progress_bar=null
    "paths.log_dir=$out/logs")

step environment 60 bash -c 'nvidia-smi || true; python -c "import torch, pytorch_lightning as pl, timm;
print(torch.__version__, pl.__version__, timm.__version__, torch.cuda.is_available())"'
step tests 150 python -m pytest -q -p no:cacheprovider tests/test_inference.py \
    tests/tasks/test_speed.py tests/tasks/test_no_sync.py tests/layers/test_fuse.py \
    tests/layers/test_fuse_timm.py tests/training/test_callbacks.py
step big 300 python benchmarks/throughput.py "${common[@]}" --backbones "$big" \
    --warmup 5 --steps 10 --windows 5 --json "$out/big.json" \
    --results "Throughput, $device, $big, compiled"
step others 150 python benchmarks/throughput.py "${common[@]}" --no-compile \
    --backbones $others --warmup 3 --steps 10 --windows 5 \
    --json "$out/others.json" --results "Throughput, $device, eager"
step train 120 python train.py "${run[@]}" trainer="$trainer"
step ddp 90 python train.py "${run[@]}" trainer="$ddp" trainer.devices=1
step fsdp 90 python train.py "${run[@]}" trainer=fsdp trainer.devices=1

cp benchmarks/RESULTS.md "$out/RESULTS.md"
echo
cat "$summary"
for log in big others; do
    sed -n '/^| backbone/,$p' "$out/$log.log"
done
for log in train ddp fsdp; do
    echo "$log: $(grep -h "│ val/miou\|^Error" "$out/$log.log" | tail -n 1)"
done
