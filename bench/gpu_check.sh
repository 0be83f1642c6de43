#!/usr/bin/env bash
# The GPU check of train.py: run it as is on a machine with an NVIDIA GPU (about 5-8 minutes on
# one H100/H200, most of it torch.compile and building the data), from a fresh clone:
#
#     bash bench/gpu_check.sh                  # builds .venv, ./run and the demo data like `make demo`
#     bash bench/gpu_check.sh --device=cpu     # dry run: the same steps on tiny models, gloo, float32
#     bash bench/gpu_check.sh --data_root=DIR --vocab_size=N   # use DIR/tokN/*.bin and DIR/tokN.bin
#
# Steps: the 15M config in bf16 with compile (tok/s, MFU, peak memory); the 110M config for 50
# steps; with 2+ GPUs a 2-process torchrun over NCCL with the same global batch as the 15M run
# (its val loss must land within 5% of it); an fp16 run (GradScaler); a resume of the 15M
# checkpoint on another GPU (cuda:1, or cuda:0 with one GPU); export v0/v2 and ./run, ./runq on it.
# Prints one table and exits non-zero when a step failed. Logs and checkpoints: out/gpu_check/.
set -uo pipefail
cd "$(dirname "$0")/.."

DEVICE=cuda
DATA_ROOT=
VOCAB=
for a in "$@"; do
    case $a in
        --device=*) DEVICE=${a#*=} ;;
        --data_root=*) DATA_ROOT=${a#*=} ;;
        --vocab_size=*) VOCAB=${a#*=} ;;
        *) echo "error: unknown option $a (options: --device=cuda|cpu --data_root=DIR --vocab_size=N)" >&2; exit 2 ;;
    esac
done
if [ "$DEVICE" != cuda ] && [ "$DEVICE" != cpu ]; then
    echo "error: --device must be cuda or cpu, got $DEVICE" >&2; exit 2
fi
if [ -n "$DATA_ROOT" ] && [ -z "$VOCAB" ]; then
    echo "error: --data_root needs --vocab_size" >&2; exit 2
fi

PY=.venv/bin/python
OUT=${GPU_CHECK_OUT:-out/gpu_check}
make -s venv run >/dev/null || { echo "error: make venv run failed" >&2; exit 1; }
if [ -z "$DATA_ROOT" ]; then  # the demo's offline corpus, vocabulary and shards (make reuses them)
    VOCAB=2048
    DATA_ROOT=data/demo
    make -s DEMO_VOCAB=$VOCAB bpe "$DATA_ROOT/tok$VOCAB/.done" "$DATA_ROOT/tok$VOCAB.bin" >/dev/null \
        || { echo "error: building the demo data failed (make demo's first stages)" >&2; exit 1; }
fi
TOK_BIN=$DATA_ROOT/tok$VOCAB.bin
[ -f "$TOK_BIN" ] || { echo "error: no tokenizer $TOK_BIN" >&2; exit 1; }

NGPU=0
if [ "$DEVICE" = cuda ]; then
    NGPU=$($PY -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)")
    [ "$NGPU" -ge 1 ] || { echo "error: torch sees no CUDA GPU (try --device=cpu for the dry run)" >&2; exit 1; }
fi
rm -rf "$OUT" && mkdir -p "$OUT"

COMMON=(--vocab_source=custom --vocab_size="$VOCAB" --data_root="$DATA_ROOT" --always_save_checkpoint=True)
if [ "$DEVICE" = cuda ]; then
    M15=(--dim=288 --n_layers=6 --n_heads=6 --n_kv_heads=6 --max_seq_len=256 --batch_size=128
         --max_iters=300 --eval_interval=300 --eval_iters=20 --log_interval=10 --warmup_iters=30 --learning_rate=1e-3)
    M110=(--dim=768 --n_layers=12 --n_heads=12 --n_kv_heads=12 --max_seq_len=1024 --batch_size=64
          --gradient_accumulation_steps=1 --max_iters=50 --eval_interval=50 --eval_iters=5 --log_interval=5
          --warmup_iters=10)
    RUN_ON=(--device=cuda --compile=True --dtype=bfloat16)
    MORE=50
    RESUME_DEV=cuda:$((NGPU >= 2 ? 1 : 0))
    NPROC=$((NGPU >= 2 ? 2 : 0))
else  # the dry run: the same steps, tiny
    M15=(--dim=64 --n_layers=2 --n_heads=4 --n_kv_heads=4 --max_seq_len=64 --batch_size=8
         --max_iters=12 --eval_interval=12 --eval_iters=2 --log_interval=1 --warmup_iters=2 --learning_rate=1e-3)
    M110=(--dim=64 --n_layers=3 --n_heads=4 --n_kv_heads=4 --max_seq_len=128 --batch_size=4
          --gradient_accumulation_steps=1 --max_iters=4 --eval_interval=4 --eval_iters=1 --log_interval=1 --warmup_iters=1)
    RUN_ON=(--device=cpu --compile=False --dtype=bfloat16)  # train.py says it trains in float32
    MORE=4
    RESUME_DEV=cpu
    NPROC=2
    export OMP_NUM_THREADS=1
fi

STEPS=()
# step NAME DESCRIPTION COMMAND...: runs it (logs to $OUT/NAME.log), remembers pass/fail
step() {
    local name=$1 desc=$2
    shift 2
    echo "== $name: $desc" >&2
    if timeout 300 "$@" >"$OUT/$name.log" 2>&1; then
        STEPS+=("$name|$desc|ok")
    else
        STEPS+=("$name|$desc|FAILED (rc $?, see $OUT/$name.log)")
        tail -5 "$OUT/$name.log" >&2
    fi
}

step 15m "15M, ${RUN_ON[*]}, 1 process" \
    $PY train.py "${COMMON[@]}" "${M15[@]}" "${RUN_ON[@]}" --gradient_accumulation_steps=1 --out_dir="$OUT/15m"
step 110m "110M (50 steps on GPU), ${RUN_ON[*]}" \
    $PY train.py "${COMMON[@]}" "${M110[@]}" "${RUN_ON[@]}" --out_dir="$OUT/110m"
if [ "$NPROC" -ge 2 ]; then
    # the same global batch as 15m: half the micro-batch, two accumulation steps shared by 2 ranks
    BS=$(printf '%s\n' "${M15[@]}" | sed -n 's/^--batch_size=//p')
    step ddp2 "15M, torchrun 2 processes ($([ "$DEVICE" = cuda ] && echo NCCL || echo gloo)), same global batch" \
        .venv/bin/torchrun --standalone --nproc_per_node=2 train.py "${COMMON[@]}" "${M15[@]}" "${RUN_ON[@]}" \
        --batch_size=$((BS / 2)) --gradient_accumulation_steps=2 --out_dir="$OUT/ddp2"
fi
FP16_ON=("${RUN_ON[@]/--dtype=bfloat16/--dtype=float16}")
step fp16 "15M, float16 + GradScaler, compile off" \
    $PY train.py "${COMMON[@]}" "${M15[@]}" "${FP16_ON[@]/--compile=True/--compile=False}" \
    --gradient_accumulation_steps=1 --out_dir="$OUT/fp16"
# resume the 15m checkpoint (written from cuda:0) on another device, in a copy of its out_dir
cp -r "$OUT/15m" "$OUT/resume" 2>/dev/null && rm -f "$OUT/resume/metrics.jsonl"
ITERS=$(printf '%s\n' "${M15[@]}" | sed -n 's/^--max_iters=//p')
step resume "resume 15M on $RESUME_DEV for $MORE more steps, compile off" \
    $PY train.py "${COMMON[@]}" "${M15[@]}" "${RUN_ON[@]/--compile=True/--compile=False}" --device="$RESUME_DEV" \
    --gradient_accumulation_steps=1 --init_from=resume --max_iters=$((ITERS + MORE)) --eval_interval=$MORE \
    --out_dir="$OUT/resume"
step export "export v0 + v2 of the 15M checkpoint, ./run and ./runq tell a story" bash -c "
    $PY export.py $OUT/15m/model_v0.bin --version 0 --checkpoint $OUT/15m/ckpt.pt &&
    $PY export.py $OUT/15m/model_q80.bin --version 2 --checkpoint $OUT/15m/ckpt.pt &&
    ./run $OUT/15m/model_v0.bin -z $TOK_BIN -t 0 -n 48 -i '从前' > $OUT/run.txt &&
    ./runq $OUT/15m/model_q80.bin -z $TOK_BIN -t 0 -n 48 -i '从前' > $OUT/runq.txt &&
    test -s $OUT/run.txt && test -s $OUT/runq.txt && cat $OUT/run.txt"

# one table from the logs and metrics.jsonl files
printf '%s\n' "${STEPS[@]}" > "$OUT/steps.txt"
$PY - "$OUT" "$DEVICE" <<'EOF'
import json, os, sys

out, device = sys.argv[1], sys.argv[2]


def metrics(name):
    try:
        with open(os.path.join(out, name, "metrics.jsonl"), encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        return []


def gpu_line():
    for name in ("15m", "110m"):
        try:
            with open(os.path.join(out, name + ".log"), encoding="utf-8") as f:
                for line in f:
                    if line.startswith("GPU: "):
                        return line.strip()
        except OSError:
            pass
    return "GPU: none (--device=cpu dry run: tiny models, float32, no MFU)" if device == "cpu" else "GPU: ?"


rows, failed = [], False
with open(os.path.join(out, "steps.txt"), encoding="utf-8") as f:
    steps = f.read().splitlines()
for line in steps:
    name, desc, result = line.split("|", 2)
    pts = metrics(name)
    train = [p for p in pts if "loss" in p]
    evals = [p for p in pts if "val_loss" in p]
    last = train[-1] if train else {}
    tok = last.get("tok_per_s")
    mfu = last.get("mfu")
    mem = max((p.get("peak_mem_gib") or 0 for p in train), default=0)
    val = evals[-1]["val_loss"] if evals else None
    rows.append([name, desc, f"{tok:,.0f}" if tok else "-", f"{mfu * 100:.1f}%" if mfu else "n/a",
                 f"{mem:.1f} GiB" if mem else "-", f"{val:.4f}" if val is not None else "-", result])
    failed |= result != "ok"
# 2 processes with the same global batch as 1 process: the same loss (to 5%; other data order)
byname = {r[0]: r for r in rows}
if "ddp2" in byname and byname["ddp2"][5] != "-" and byname["15m"][5] != "-":
    a, b = float(byname["15m"][5]), float(byname["ddp2"][5])
    if abs(a - b) > 0.05 * a:
        byname["ddp2"][6] = f"FAILED: val loss {b:.4f} vs {a:.4f} with 1 process"
        failed = True
if "resume" in byname:
    ev = [p for p in metrics("resume") if "val_loss" in p]
    if byname["resume"][6] == "ok" and not ev:
        byname["resume"][6] = "FAILED: no eval after resuming"
        failed = True
print()
print(gpu_line())
head = ["step", "what", "tok/s (last)", "MFU", "peak mem", "val loss", "result"]
widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
for r in [head, ["-" * w for w in widths]] + rows:
    print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")
sys.exit(1 if failed else 0)
EOF
