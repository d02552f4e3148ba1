#!/usr/bin/env bash
# One-command check of medloss's CUDA paths, for a machine with a CUDA device:
#
#     bash benchmarks/gpu_check.sh [--budget SECONDS] [--log FILE]     # within --budget (480 s) on one GPU
#     bash benchmarks/gpu_check.sh --cpu-dry-run                        # the same stages on the CPU, tiny shapes
#
# Stages, in order of importance (a stage that passes its time limit is stopped and reported, the next one runs):
#   1. environment: nvidia-smi -L, torch / CUDA versions, the device;
#   2. every test marked `cuda` (python -m pytest -m cuda: the `slow` ones too, as this -m replaces the default
#      `-m 'not slow'`): each loss and transform on the device against its CPU value and gradient;
#   3. benchmarks/losses.py --device cuda at 2x2x64^3, 4x2x512^2 and 2x2x128^3: every loss's forward + backward
#      and its ratio to MONAI's DiceLoss measured in the same run;
#   4. benchmarks/training_step.py --device cuda --quick, when that script is present: one nnU-Net training
#      iteration with Dice+CE against Dice+CE + Betti matching.
# Each stage has a time limit, and the whole run a budget (--budget, default 480 s): a stage gets at most what is
# left of it, and a stage with nothing left is reported as skipped. A summary (stage, status, seconds) closes the run.
#
# Python: $PYTHON if set, else .venv/bin/python if present (the README's set-up), else python3.
# Log: everything printed is also written to --log FILE; default $OUT/gpu_check.log when $OUT is set (a batch
# machine that collects the files under $OUT), else ${TMPDIR:-/tmp}/medloss-gpu-check-<UTC time>.log. Its path is
# printed first and last.
# Exit status: 0 when every stage passed; 1 when one did not, and at once (one line on stderr) without CUDA.
# --cpu-dry-run runs every stage on the CPU with tiny shapes (the `cuda` tests are skipped there): it tests this
# script's plumbing (tests/benchmarks/test_gpu_check.py), not the GPU.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

dry_run=0
budget=480
log=""
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu-dry-run) dry_run=1 ;;
        --budget) budget="${2:?--budget needs a number of seconds}"; shift ;;
        --log) log="${2:?--log needs a file}"; shift ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check: error: unknown argument '$1' (expected --cpu-dry-run, --budget SECONDS, --log FILE)" >&2
           exit 2 ;;
    esac
    shift
done
case "$budget" in
    ''|*[!0-9]*) echo "gpu_check: error: --budget must be a whole number of seconds, got '$budget'" >&2; exit 2 ;;
esac

# the checkout's medloss (and devtools/) also where it is not pip-installed: the scripts under benchmarks/ are run
# by path, which puts benchmarks/, not the repository root, on sys.path
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -n "${PYTHON:-}" ]; then
    py="$PYTHON"
elif [ -x .venv/bin/python ]; then
    py=.venv/bin/python
else
    py=python3
fi

if [ "$dry_run" -eq 0 ]; then
    why="$("$py" -c 'import torch
if not torch.cuda.is_available():
    print(f"torch {torch.__version__} (CUDA build: {torch.version.cuda}) sees no CUDA device")' 2>&1 | tail -n 1)"
    if [ -n "$why" ]; then
        echo "gpu_check: no CUDA device: $why; run on a CUDA machine, or with --cpu-dry-run to test this script" >&2
        exit 1
    fi
    device=cuda
    # B C H W [D] of the loss benchmark: the issue's 3D patch sizes and a 2D image of TopoMortar's size
    shapes=("2 2 64 64 64" "4 2 512 512" "2 2 128 128 128")
    repeats=3
    training_step=(--device cuda --quick)
    limits=(60 180 60 60 120 180)  # environment, cuda tests, the three loss benchmarks, training step
else
    device=cpu
    shapes=("2 2 12 12 12" "4 2 32 32" "2 2 16 16 16")
    repeats=1
    training_step=(--device cpu --shapes 16x16x16 --repeats 1 --warmup 0 --draws 1 --base-features 4)
    limits=(60 180 60 60 60 120)
fi

if [ -z "$log" ]; then
    if [ -n "${OUT:-}" ]; then
        log="$OUT/gpu_check.log"
    else
        log="${TMPDIR:-/tmp}/medloss-gpu-check-$(date -u +%Y%m%dT%H%M%SZ).log"
    fi
fi
mkdir -p "$(dirname "$log")" && : > "$log" || { echo "gpu_check: error: cannot write the log file '$log'" >&2; exit 2; }

summary=()
failures=0
start=$SECONDS

# run_stage NAME LIMIT COMMAND...: runs COMMAND under min(LIMIT, what is left of the budget) seconds
run_stage() {
    local name="$1" limit="$2" left rc=0 status t0
    shift 2
    left=$((budget - (SECONDS - start)))
    [ "$left" -lt "$limit" ] && limit="$left"
    if [ "$limit" -le 0 ]; then
        summary+=("$(printf '%-34s %-22s %6s' "$name" "skipped (budget spent)" "-")")
        failures=$((failures + 1))
        return
    fi
    echo
    echo "=== $name (limit ${limit} s): $*"
    t0=$SECONDS
    timeout --kill-after=10 "$limit" "$@" || rc=$?
    case "$rc" in
        0) status=passed ;;
        124|137) status="timed out" ;;
        *) status="failed (exit $rc)" ;;
    esac
    [ "$rc" -eq 0 ] || failures=$((failures + 1))
    summary+=("$(printf '%-34s %-22s %6s' "$name" "$status" "$((SECONDS - t0))")")
}

# the environment stage: versions and devices as torch sees them
environment_py='import platform

import monai
import torch

import medloss

print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA build {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version()}), monai {monai.__version__}, medloss {medloss.__version__} "
      f"({medloss.__path__[0]})")
print(f"CUDA available: {torch.cuda.is_available()}, {torch.cuda.device_count()} device(s)")
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"cuda:{i}: {p.name}, compute capability {p.major}.{p.minor}, {p.total_memory / 2**30:.0f} GiB")'

main() {
    echo "medloss GPU check ($([ "$dry_run" -eq 1 ] && echo "CPU dry run" || echo "$device")), $(date -u +%FT%TZ), \
budget ${budget} s, python $py; log: $log"
    echo "nvidia-smi -L:"
    timeout 20 nvidia-smi -L 2>&1 || echo "(nvidia-smi not available)"
    run_stage "environment" "${limits[0]}" "$py" -c "$environment_py"
    # a test module that fails to import (a missing test dependency) fails the stage, but not the other tests
    run_stage "pytest -m cuda" "${limits[1]}" "$py" -m pytest -m cuda -q -p no:cacheprovider \
        --continue-on-collection-errors
    local i=0 shape
    for shape in "${shapes[@]}"; do
        # shellcheck disable=SC2086 # the shape is a list of sizes
        run_stage "losses.py --shape $shape" "${limits[$((2 + i))]}" \
            "$py" benchmarks/losses.py --device "$device" --repeats "$repeats" --shape $shape
        i=$((i + 1))
    done
    if [ -f benchmarks/training_step.py ]; then
        run_stage "training_step.py" "${limits[5]}" "$py" benchmarks/training_step.py "${training_step[@]}"
    else
        summary+=("$(printf '%-34s %-22s %6s' "training_step.py" "skipped (no script)" "-")")
    fi
    echo
    echo "=== summary ($((SECONDS - start)) s; log: $log)"
    printf '%-34s %-22s %6s\n' "stage" "status" "seconds"
    printf '%s\n' "${summary[@]}"
    if [ "$failures" -eq 0 ]; then
        echo "gpu_check: all stages passed"
    else
        echo "gpu_check: $failures stage(s) did not pass"
    fi
    [ "$failures" -eq 0 ]
}

main 2>&1 | tee -a "$log"
exit "${PIPESTATUS[0]}"
