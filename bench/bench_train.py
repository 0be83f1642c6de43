"""
Training throughput benchmark: tokens/s and MFU of full training steps (forward, backward, AdamW)
on random token data, for the published model configs (vocab 5000).

    python3 bench/bench_train.py                                   # CPU, 15M, float32, batch 8 x 256
    python3 bench/bench_train.py --device=cuda                     # GPU, bf16 + compile, 15M and 110M
    python3 bench/bench_train.py --device=cuda --models=110M --batch_size=32

MFU on the GPU is against the card's dense bf16 peak (gpus.GPU_PEAK_FLOPS, by exact card name;
"n/a" for a card not in it). A CPU has no published peak to quote, so on the CPU the peak is
measured: the best FLOP/s of a large float32 matmul on this machine (a generous "attainable
peak"), printed alongside. On the CPU --dtype=bfloat16 runs under CPU autocast: train.py trains in
float32 on the CPU because this measured slower (see README).
"""

import argparse
import os
import sys
import time
from contextlib import nullcontext

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from errors import die  # noqa: E402
from gpus import gpu_peak_flops  # noqa: E402
from model import ModelArgs, Transformer  # noqa: E402

CONFIGS = {
    "15M": dict(dim=288, n_layers=6, n_heads=6, n_kv_heads=6, max_seq_len=256),
    "42M": dict(dim=512, n_layers=8, n_heads=8, n_kv_heads=8, max_seq_len=1024),
    "110M": dict(dim=768, n_layers=12, n_heads=12, n_kv_heads=12, max_seq_len=1024),
}


def measured_cpu_peak(n=1024, reps=20):
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = 0.0
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t))
    return best


def bench(name, device, dtype, batch_size, seq_len, compile_model, warmup, iters, peak):
    cfg = dict(CONFIGS[name])
    cfg["max_seq_len"] = seq_len or cfg["max_seq_len"]
    T = cfg["max_seq_len"]
    torch.manual_seed(0)
    model = Transformer(ModelArgs(vocab_size=5000, multiple_of=32, **cfg)).to(device)
    device_type = "cuda" if "cuda" in device else "cpu"
    optimizer = model.configure_optimizers(0.1, 5e-4, (0.9, 0.95), device_type, verbose=False)
    ptdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    ctx = nullcontext() if dtype == "float32" else torch.amp.autocast(device_type=device_type, dtype=ptdtype)
    step_model = torch.compile(model) if compile_model else model
    x = torch.randint(0, 5000, (batch_size, T), device=device)
    y = torch.randint(0, 5000, (batch_size, T), device=device)

    def step():
        with ctx:
            step_model(x, y)
        model.last_loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    if device_type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(iters):
        step()
    if device_type == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / iters
    tok_s = batch_size * T / dt
    achieved = model.estimate_mfu(batch_size, dt, 1.0)  # FLOP/s
    mfu = achieved / peak if peak else None
    mfu_str = f"MFU {mfu * 100:.2f}% (of {peak / 1e9:,.1f} GFLOP/s)" if peak else "MFU n/a"
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{name:>5} ({n_params / 1e6:.1f}M params) {device} {dtype} compile={compile_model} "
          f"batch {batch_size} x {T}: {dt * 1000:.1f} ms/iter, {tok_s:,.0f} tok/s, "
          f"{achieved / 1e9:,.1f} GFLOP/s achieved, {mfu_str}", flush=True)
    return dict(model=name, ms_per_iter=dt * 1000, tok_per_s=tok_s, mfu=mfu)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--models", default=None, help="comma-separated: 15M,42M,110M (default: 15M on cpu, 15M,110M on cuda)")
    p.add_argument("--batch_size", type=int, default=None, help="default: 8 on cpu, 64 (15M) / 16 (110M) on cuda")
    p.add_argument("--seq_len", type=int, default=None, help="default: 256 on cpu, the model's context on cuda")
    p.add_argument("--dtype", default=None, help="default: float32 on cpu, bfloat16 on cuda")
    p.add_argument("--compile", type=int, default=None, help="1/0; default: 0 on cpu, 1 on cuda")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--iters", type=int, default=None)
    a = p.parse_args()
    cuda = "cuda" in a.device
    if cuda and not torch.cuda.is_available():
        die("--device=cuda but CUDA is not available")
    models = (a.models or ("15M,110M" if cuda else "15M")).split(",")
    dtype = a.dtype or ("bfloat16" if cuda else "float32")
    compile_model = bool(a.compile) if a.compile is not None else cuda
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        gpu = torch.cuda.get_device_name()
        peak = gpu_peak_flops(gpu)
        print(f"device: {gpu}, " + (f"peak {peak / 1e12:g} TFLOP/s (dense bf16)" if peak
                                    else "not in gpus.GPU_PEAK_FLOPS: mfu n/a"))
    else:
        peak = measured_cpu_peak()
        print(f"device: CPU, {torch.get_num_threads()} threads, measured float32 matmul peak "
              f"{peak / 1e9:.1f} GFLOP/s (used as the MFU denominator)")
    for name in models:
        if name not in CONFIGS:
            die(f"unknown model {name} (choose from {', '.join(CONFIGS)})")
        bs = a.batch_size or (8 if not cuda else (64 if name == "15M" else 16))
        seq = a.seq_len or (256 if not cuda else None)
        bench(name, a.device, dtype, bs, seq, compile_model,
              a.warmup if a.warmup is not None else (2 if not cuda else 10),
              a.iters if a.iters is not None else (5 if not cuda else 30), peak)
    return 0


if __name__ == "__main__":
    sys.exit(main())
