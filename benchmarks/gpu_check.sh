#!/usr/bin/env bash
# The GPU checks in one call of at most 8 minutes on one GPU, most valuable first:
#   install     hydra-core, omegaconf and albumentations from .whl/ into /tmp/site, when missing
#   env         GPU, driver and package versions
#   tests       the GPU tests: bf16 + compiled inference, no host-device sync in a training step,
#               speed switches, BatchNorm folding, training callbacks
#   throughput  ResNet-50 training and inference, ours against timm, eager then compiled, and our
#               folded inference path (batch 256, 224x224, bf16, channels-last), in one process
#   lightning   the Lightning Trainer's overhead over a plain loop on the same network (ResNet-18)
#   train       train.py end to end on the GPU: segmentation, bf16, compiled, channels-last,
#               fused AdamW (read back from the checkpoint)
#   ddp, fsdp   the same run with DDP and with FSDP on one device
#
# Each step runs under its own time limit (BUDGETS below; their sum stays within LIMIT, the
# whole script's) and prints its result line the moment it ends:
#   [gpu-check] <step> <seconds>s/<budget>s <ok|TIMEOUT|FAILED(rc=N)|skipped>: <figures>
# and the measurements of tests, throughput and lightning are printed live as they come. A step
# that fails or runs out of time does not stop the others. Everything bulky
# (data cache, run folders, full logs) stays in WORK; OUT_DIR gets at most 7 small files, none
# in a subfolder: summary.txt (every line printed), tests.txt, logs.txt (the tail of every step's
# log), throughput.json, lightning.json, runs.json (the train, ddp and fsdp figures) and
# RESULTS.md (benchmarks/RESULTS.md with this machine's sections).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]          # OUT_DIR: default $OUT, else $WORK/out
#
# A machine without hydra-core, omegaconf or albumentations needs their wheels, for its Python,
# in .whl/ at the repository root; the install step puts them into /tmp/site. Every step runs the
# working tree (PYTHONPATH), with python3.
#
# Variables shrink or move it: DEVICE (cuda), BATCH (256), SIZE (224), PRECISION (bf16),
# BIG (resnet50), SMALL (resnet18) and SMALL_BATCH (128) for the Trainer overhead, TIMING, COMPILE
# (1; 0: no torch.compile anywhere), TESTS, RUN_TASK, TRAIN_LIMITS, WORK. The plumbing on a CPU
# (FSDP reports "skipped: needs CUDA" there; TIME_SCALE=N multiplies every budget):
#   DEVICE=cpu BATCH=2 SIZE=32 PRECISION=32 BIG=resnet18 SMALL_BATCH=2 COMPILE=0 TIME_SCALE=3 \
#       TIMING="--warmup 1 --steps 1 --windows 2" TESTS=tests/training/test_speed.py \
#       RUN_TASK=task=classification bash benchmarks/gpu_check.sh /tmp/check
set -uo pipefail

# step:seconds, in the order the steps run; the sum must stay within LIMIT
BUDGETS="install:20 env:20 tests:90 throughput:145 lightning:35 train:90 ddp:35 fsdp:35"
LIMIT=480
KILL_AFTER=3    # seconds between SIGTERM and SIGKILL, inside each budget
scale=${TIME_SCALE:-1}  # multiplies every budget and LIMIT (a dry run on a slow CPU)

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo" || exit 1
work=${WORK:-/tmp/cvtasks-gpu-check}
out=${1:-${OUT:-$work/out}}
rm -rf "$work/logs" "$work/runs"
mkdir -p "$work/logs" "$work/runs" "$out"
out=$(cd "$out" && pwd)
device=${DEVICE:-cuda}
batch=${BATCH:-256}
size=${SIZE:-224}
precision=${PRECISION:-bf16}
big=${BIG:-resnet50}
small=${SMALL:-resnet18}
small_batch=${SMALL_BATCH:-128}
timing=${TIMING:---warmup 3 --steps 10 --windows 3}
compile=${COMPILE:-1}
tests=${TESTS:-tests/test_inference.py tests/training/test_speed.py tests/tasks/test_no_sync.py \
tests/layers/test_fuse.py tests/layers/test_fuse_timm.py tests/training/test_callbacks.py}
run_task=${RUN_TASK:-task=segmentation}
train_limits=${TRAIN_LIMITS:-trainer.max_epochs=1 trainer.limit_train_batches=40 \
trainer.limit_val_batches=5 trainer.limit_test_batches=5}
export CVTASKS_CACHE=${CVTASKS_CACHE:-$work/cache}
export BENCHMARK_RESULTS=$out/RESULTS.md
export PYTHONUNBUFFERED=1
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
cp benchmarks/RESULTS.md "$BENCHMARK_RESULTS"
: >"$out/summary.txt"
: >"$out/logs.txt"
start_all=$SECONDS
counts=""

say() {  # one line to standard output and summary.txt
    echo "$*"
    echo "$*" >>"$out/summary.txt"
}

budget_of() {
    local pair
    for pair in $BUDGETS; do
        [ "${pair%%:*}" = "$1" ] && echo $((${pair#*:} * scale)) && return
    done
    echo 0
}

result() {  # result STEP STATUS SECONDS DETAIL: the step's one result line
    say "$(printf '[gpu-check] %-10s %3ss/%-4s %s: %s' "$1" "$3" "$(budget_of "$1")s" "$2" "$4")"
    counts="$counts ${2%%(*}"
}

status_of() {  # exit status -> ok | TIMEOUT | FAILED(rc=N)
    case $1 in
        0) echo ok ;;
        124 | 137) echo TIMEOUT ;;
        *) echo "FAILED(rc=$1)" ;;
    esac
}

fits() {  # fits STEP: whether the step's budget still fits in what is left of LIMIT
    [ $((SECONDS - start_all + $(budget_of "$1"))) -le $((LIMIT * scale)) ]
}

run_step() {  # run_step STEP RESERVE LIVE_REGEX|- COMMAND...: run it within its budget, less
    # RESERVE seconds kept for reading its results back (report)
    local name=$1 live=$3 log="$work/logs/$1.log" limit pid streamer=""
    report_limit=$2
    shift 3
    limit=$(($(budget_of "$name") - report_limit - KILL_AFTER))
    step_start=$SECONDS
    : >"$log"
    timeout --kill-after="$KILL_AFTER" "$limit" "$@" >>"$log" 2>&1 &
    pid=$!
    if [ "$live" != - ]; then
        # the lines worth keeping, printed as they are written; this ends when the command does,
        # even if a stray child process still holds the log open
        tail -n +1 -s 0.2 -f --pid="$pid" "$log" | grep --line-buffered -E "$live" \
            | sed -u "s/^/  [$name] /" | tee -a "$out/summary.txt" &
        streamer=$!
    fi
    wait "$pid"
    step_rc=$?
    [ -n "$streamer" ] && wait "$streamer"
    { echo "== $name: exit status $step_rc"; tail -n 60 "$log"; } >>"$out/logs.txt"
    if [ "$step_rc" -ne 0 ]; then  # the error, so the reason is on screen
        grep -E "Error|error:|Traceback" "$log" | tail -n 3 | sed "s/^/  [$name] /" \
            | tee -a "$out/summary.txt"
    fi
}

report() {  # report STEP COMMAND...: the result line, its detail from COMMAND's last line
    local name=$1 detail
    shift
    detail=$(timeout "$report_limit" "$@" 2>&1 | tail -n 1)
    [ "$step_rc" -ne 0 ] && detail="$detail (see logs.txt)"
    result "$name" "$(status_of "$step_rc")" $((SECONDS - step_start)) "$detail"
}

skip() {  # skip STEP REASON
    result "$1" skipped 0 "$2"
}

# -- the plan ---------------------------------------------------------------------------------
total=0
plan=""
for pair in $BUDGETS; do
    total=$((total + $(budget_of "${pair%%:*}")))
    plan="$plan ${pair%%:*} $(budget_of "${pair%%:*}")s,"
done
say "[gpu-check] plan:${plan%,} = ${total}s of $((LIMIT * scale))s; device $device; out $out"
if [ "$total" -gt $((LIMIT * scale)) ]; then
    say "[gpu-check] error: the budgets add up to ${total}s, over the limit; fix BUDGETS"
    exit 2
fi

# -- install: the staged wheels, only where the packages are missing ----------------------------
step_start=$SECONDS
needs="import hydra, omegaconf, albumentations"
if python3 -c "$needs" 2>/dev/null; then
    skip install "hydra-core, omegaconf and albumentations already importable"
elif compgen -G ".whl/*.whl" >/dev/null; then
    timeout --kill-after="$KILL_AFTER" $(($(budget_of install) - KILL_AFTER)) \
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl >"$work/logs/install.log" 2>&1
    step_rc=$?
    export PYTHONPATH="/tmp/site:$PYTHONPATH"
    if ! python3 -c "$needs" >>"$work/logs/install.log" 2>&1 && [ "$step_rc" -eq 0 ]; then
        step_rc=1
    fi
    { echo "== install: exit status $step_rc"; tail -n 20 "$work/logs/install.log"; } \
        >>"$out/logs.txt"
    result install "$(status_of "$step_rc")" $((SECONDS - step_start)) \
        "$(find .whl -name '*.whl' | wc -l) wheels into /tmp/site"
else
    step_rc=1
    result install "FAILED(rc=1)" 0 "hydra-core, omegaconf or albumentations missing, no .whl/"
fi

# -- env ----------------------------------------------------------------------------------------
cat >"$work/env_probe.py" <<'PY'
import platform, torch, pytorch_lightning as pl, timm, hydra, albumentations as A
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
print(f"{gpu}; torch {torch.__version__} (CUDA {torch.version.cuda}), Lightning {pl.__version__},",
      f"timm {timm.__version__}, hydra {hydra.__version__}, albumentations {A.__version__},",
      f"Python {platform.python_version()}")
PY
run_step env 3 - bash -c "nvidia-smi --query-gpu=name,driver_version,memory.total \
--format=csv,noheader 2>/dev/null; python3 '$work/env_probe.py'"
report env bash -c "tail -n 2 '$work/logs/env.log' | paste -sd ';'"

# -- tests --------------------------------------------------------------------------------------
if fits tests; then
    # shellcheck disable=SC2086  # $tests is a list of paths
    run_step tests 3 ' (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)( |$)' \
        python3 -m pytest -v -rfEs -p no:cacheprovider --color=no $tests
    tail -n 300 "$work/logs/tests.log" >"$out/tests.txt"
    report tests bash -c "grep -E '^=+ .*(passed|failed|error|skipped).* =+$' \
'$work/logs/tests.log' | tail -n 1 | sed -E 's/^=+ | =+$//g'"
else skip tests "would pass the $((LIMIT * scale))s limit"; fi

# -- throughput ---------------------------------------------------------------------------------
no_compile=$([ "$compile" = 1 ] || echo --no-compile)
if fits throughput; then
    # shellcheck disable=SC2086  # $timing and $no_compile are lists of flags
    run_step throughput 5 ' images/s$' python3 benchmarks/throughput.py --device "$device" \
        --backbones "$big" --batch-size "$batch" --image-size "$size" --precision "$precision" \
        --channels-last --no-lightning $no_compile $timing --json "$out/throughput.json" \
        --results "Throughput, $device, $big, $precision"
    report throughput python3 benchmarks/gpu_check_report.py throughput "$out/throughput.json"
    sed -n '/^| backbone/,$p' "$work/logs/throughput.log" | tee -a "$out/summary.txt"
else skip throughput "would pass the $((LIMIT * scale))s limit"; fi

# -- lightning ----------------------------------------------------------------------------------
if fits lightning; then
    # shellcheck disable=SC2086
    run_step lightning 5 ' images/s$| %$' python3 benchmarks/lightning_bench.py \
        --device "$device" --backbones "$small" --batch-size "$small_batch" --image-size "$size" \
        --precision "$precision" --channels-last --no-compile $timing \
        --json "$out/lightning.json" --results "Lightning overhead, $device, $small, $precision"
    report lightning python3 benchmarks/gpu_check_report.py lightning "$out/lightning.json"
else skip lightning "would pass the $((LIMIT * scale))s limit"; fi

# -- train.py: one device, then DDP and FSDP ----------------------------------------------------
if [ "$device" = cuda ]; then
    one=(trainer=gpu "compile=$([ "$compile" = 1 ] && echo true || echo false)")
    ddp=(trainer=ddp)
else
    one=(trainer=cpu compile=false)
    ddp=(trainer=ddp_cpu)
fi
# shellcheck disable=SC2206  # word lists on purpose
common=($run_task $train_limits channels_last=true logger=none callbacks.progress_bar=null)

train_step() {  # train_step STEP OVERRIDES...
    local name=$1
    shift
    if ! fits "$name"; then
        skip "$name" "would pass the $((LIMIT * scale))s limit"
        return
    fi
    # 8 s to read the figures back: the checkpoint check imports torch
    run_step "$name" 8 - python3 train.py "${common[@]}" "$@" \
        "hydra.run.dir=$work/runs/$name"
    report "$name" python3 benchmarks/gpu_check_report.py run "$work/runs/$name" \
        --step "$name" --collect "$out/runs.json"
}

train_step train "${one[@]}"
train_step ddp "${ddp[@]}" trainer.devices=1 compile=false
if [ "$device" = cuda ]; then
    train_step fsdp trainer=fsdp trainer.devices=1 compile=false
else
    skip fsdp "needs CUDA (FSDP shards over GPUs)"
fi

# -- summary ------------------------------------------------------------------------------------
tally=$(echo "$counts" | tr ' ' '\n' | grep -v '^$' | sed 's/(.*//' | sort | uniq -c \
    | awk '{printf "%s%s %s", sep, $1, $2; sep=", "}')
say "[gpu-check] done in $((SECONDS - start_all))s of $((LIMIT * scale))s: $tally; files in $out:" \
    "$(cd "$out" && ls | tr '\n' ' ')"
