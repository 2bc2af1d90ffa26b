#!/usr/bin/env bash
# GPU check of train.base's CUDA path (bf16 autocast, torch.compile, pinned non-blocking copies, MFU): run it
# first on any GPU machine, before a long run. About 2 minutes on one H100 (most of it compiling).
#
#   bash benches/gpu_check.sh [DATA]        # from the repository root; DATA defaults to ../shared/corpus/mix
#
# Trains a 32k tokenizer on 20M chars, then depth 4, T = 2048, 50 steps of 64 x 2048 tokens (2 micro-batches of
# 32 rows, so gradient accumulation runs too) and a val bpb at the end. Prints tok/s, MFU and the share of step time
# spent waiting for data over steps 11-50 (the first ten compile and warm up). Then resumes from the step-25
# checkpoint in a new process and compares the losses of steps 26-50 with the first run's. Exits 1 if data-wait is
# 1% or more, if a resumed loss differs by more than 1e-3, or if anything fails.
set -euo pipefail

DATA="${1:-../shared/corpus/mix}"
PY="${PYTHON:-python}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi: not found"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"

"$PY" -m nanobpe train --vocab-size 32768 --data "$DATA" --max-chars 20M --out "$WORK/tok" --quiet
ARGS=(--device cuda --compile --tokenizer "$WORK/tok" --data "$DATA" --depth 4 --max-seq-len 2048
    --device-batch-size 32 --total-batch-size 131072 --num-iterations 50 --eval-every 0 --eval-tokens 262144)
timeout 240 "$PY" -m train.base "${ARGS[@]}" --save-every 25 --checkpoint-dir "$WORK/ck" 2>&1 | tee "$WORK/log"
mkdir "$WORK/ck2" && cp -r "$WORK/ck/step_000025" "$WORK/ck2/"
timeout 240 "$PY" -m train.base "${ARGS[@]}" --checkpoint-dir "$WORK/ck2" --resume > "$WORK/log2" 2>&1 \
    || { cat "$WORK/log2"; exit 1; }

"$PY" - "$WORK/log" "$WORK/log2" <<'EOF'
import re
import statistics
import sys

text = open(sys.argv[1]).read()
rows = []
for m in re.finditer(
    r"step (\d+)/\d+ \| loss \S+ \| lrm \S+ \| dt ([\d.]+)ms \| tok/s ([\d,]+)(?: \| mfu ([\d.]+)%)? \| data-wait ([\d.]+)ms",
    text,
):
    step, dt, tok_s, mfu, wait = int(m[1]), float(m[2]), float(m[3].replace(",", "")), m[4], float(m[5])
    if step > 10:
        rows.append((dt, tok_s, float(mfu) if mfu else float("nan"), wait))
if len(rows) < 30:
    sys.exit(f"gpu_check: FAIL: only {len(rows)} timed steps in the log")
dt_total = sum(r[0] for r in rows)
wait_total = sum(r[3] for r in rows)
share = 100 * wait_total / dt_total
print(
    f"gpu_check: steps 11-50: median {statistics.median(r[1] for r in rows):,.0f} tok/s, "
    f"median MFU {statistics.median(r[2] for r in rows):.1f}%, median step {statistics.median(r[0] for r in rows):.1f}ms, "
    f"data-wait {wait_total:.1f}ms of {dt_total:.0f}ms = {share:.2f}% of step time"
)
if "val bpb" not in text:
    sys.exit("gpu_check: FAIL: no val bpb in the log")
if share >= 1.0:
    sys.exit(f"gpu_check: FAIL: data-wait {share:.2f}% of step time (must stay below 1%)")


def losses(path: str) -> dict[int, float]:
    return {int(m[1]): float(m[2]) for m in re.finditer(r"step (\d+)/\d+ \| loss (\S+)", open(path).read())}


first, resumed = losses(sys.argv[1]), losses(sys.argv[2])
steps = sorted(resumed)
if steps != list(range(26, 51)):
    sys.exit(f"gpu_check: FAIL: the resumed run logged steps {steps[:3]}...{steps[-3:]}, not 26-50")
worst = max(abs(resumed[s] - first[s]) for s in steps)
print(f"gpu_check: resumed from step 25: largest |loss difference| over steps 26-50 = {worst:.2e}")
if worst > 1e-3:
    sys.exit("gpu_check: FAIL: the resumed run does not follow the first one")
print("gpu_check: OK")
EOF
