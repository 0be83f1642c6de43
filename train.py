"""
Train a Llama 2 model on pretokenized (Chinese) TinyStories, as llama2.c's train.py.

Single process (e.g. on a CPU):
    python3 train.py --vocab_source=custom --vocab_size=5000 --device=cpu --compile=False \
        --batch_size=8 --dim=64 --n_layers=2 --n_heads=4 --max_seq_len=128 --max_iters=200

DDP on one machine with 4 GPUs (NCCL); with --device=cpu the ranks use gloo instead:
    torchrun --standalone --nproc_per_node=4 train.py --vocab_source=custom --vocab_size=5000

Instruction tuning (SFT) of a pretrained model on instruction/story pairs (instruct.py pretokenize):
    python3 train.py --task=sft --init_from=out/ckpt.pt --vocab_source=custom --vocab_size=5000 ...
    (--init_from also takes a llama2.c .bin such as stories15M.bin; --init_from=resume continues)

DDP on 2 machines (run on each, --node_rank=0 on the one whose address is --master_addr):
    torchrun --nnodes=2 --nproc_per_node=8 --node_rank=0 --master_addr=10.0.0.1 --master_port=29500 train.py ...
    (add NCCL_IB_DISABLE=1 in front of it if the machines have no Infiniband)

Settings are the module-level variables below; override them with --key=value or a config file
(see configurator.py). The resolved config is printed and saved in out_dir/ckpt.pt. Every logged
point is appended to out_dir/metrics.jsonl (python3 plot_metrics.py out_dir draws it).
"""

import json
import math
import os
import sys
import time
from contextlib import nullcontext
from datetime import datetime

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from configurator import configure
from errors import die, first_line
from export import check_shapes, export_size, load_checkpoint, load_model_bin, model_export, torch_load
from fileio import DiskFull, disk_full, lock_folder, nbytes, write_atomic, write_bytes_atomic
from gpus import gpu_peak_flops
from model import ModelArgs, Transformer, shares_classifier, untie_classifier

# -----------------------------------------------------------------------------
# I/O
out_dir = "out"
eval_interval = 2000
log_interval = 1
eval_iters = 100
eval_only = False  # if True, script exits right after the first eval
always_save_checkpoint = False  # if True, always save a checkpoint after each eval
init_from = "scratch"  # 'scratch', 'resume', or a ckpt.pt / llama2.c .bin to start from (weights only)
task = "pretrain"  # pretrain: windows of the story shards; sft: instruction/story pairs, loss on the story
# wandb logging
wandb_log = False  # disabled by default
wandb_project = "llamac"
wandb_run_name = "run" + datetime.now().strftime("%Y_%m_%d_%H_%M_%S")
# data
batch_size = 128  # if gradient_accumulation_steps > 1, this is the micro-batch size
max_seq_len = 256
vocab_source = "llama2"  # llama2|custom; use Llama 2 vocab from Meta, or custom trained
vocab_size = 32000  # the Llama 2 tokenizer has 32K tokens
data_root = "data"  # where tinystories.py put the shards
seed = 1337
# model
dim = 288
n_layers = 6
n_heads = 6
n_kv_heads = 6
multiple_of = 32
dropout = 0.0
# adamw optimizer
gradient_accumulation_steps = 4  # used to simulate larger batch sizes
learning_rate = 5e-4  # max learning rate
max_iters = 100000  # total number of training iterations
weight_decay = 1e-1
beta1 = 0.9
beta2 = 0.95
grad_clip = 1.0  # clip gradients at this value, or disable if == 0.0
# learning rate decay settings
decay_lr = True  # whether to decay the learning rate
warmup_iters = 1000  # how many steps to warm up for
# system
device = "cuda"  # examples: 'cpu', 'cuda', 'cuda:0', 'cuda:1' etc., or try 'mps' on macbooks
dtype = "bfloat16"  # float32|bfloat16|float16
compile = True  # use PyTorch 2.0 to compile the model to be faster
# -----------------------------------------------------------------------------
config_keys = [k for k, v in globals().items()
               if not k.startswith("_") and isinstance(v, (int, float, bool, str))]
config_given = set()  # the settings the user set: on resume they must agree with the checkpoint
config = configure({k: globals()[k] for k in config_keys}, sys.argv[1:], given=config_given)
globals().update(config)
# -----------------------------------------------------------------------------

# fixing some hyperparams to sensible defaults
lr_decay_iters = max_iters  # should be ~= max_iters per Chinchilla
min_lr = 0.0  # minimum learning rate, should be ~= learning_rate/10 per Chinchilla

ddp = int(os.environ.get("RANK", -1)) != -1  # is this a torchrun run?
ddp_rank = int(os.environ.get("RANK", 0))


def fail(msg):
    """One line on stderr, tear down the process group, exit non-zero (on every rank that fails)."""
    try:
        die(msg, prefix=f"[rank {ddp_rank}] " if ddp and ddp_rank != 0 else "")
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


# validate the settings before doing anything expensive
if vocab_source not in ("llama2", "custom"):
    fail(f"vocab_source must be 'llama2' or 'custom', got {vocab_source!r}")
if vocab_source == "llama2" and vocab_size != 32000:
    fail(f"vocab_source=llama2 means vocab_size=32000 (got {vocab_size}); use --vocab_source=custom")
if task not in ("pretrain", "sft"):
    fail(f"task must be 'pretrain' or 'sft', got {task!r}")
if init_from not in ("scratch", "resume") and not os.path.isfile(init_from):
    fail(f"init_from must be 'scratch', 'resume' or the path of a ckpt.pt / llama2.c .bin, got {init_from!r}")
if dtype not in ("float32", "bfloat16", "float16"):
    fail(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
for _k in ("batch_size", "max_seq_len", "dim", "n_layers", "n_heads", "n_kv_heads", "multiple_of",
           "gradient_accumulation_steps", "eval_iters", "eval_interval", "log_interval"):
    if globals()[_k] <= 0:
        fail(f"{_k} must be positive, got {globals()[_k]}")
if dim % n_heads != 0 or n_heads % n_kv_heads != 0:
    fail(f"dim ({dim}) must be a multiple of n_heads ({n_heads}), and n_heads of n_kv_heads ({n_kv_heads})")
if (dim // n_heads) % 2 != 0:  # RoPE rotates pairs of values
    fail(f"the head size dim/n_heads = {dim // n_heads} must be even")
for _k, _v in config.items():
    if isinstance(_v, float) and not math.isfinite(_v):  # 1e999 parses as inf
        fail(f"{_k} must be a finite number, got {_v}")
# torch would reject some of these deep inside, with a traceback; the others would train nonsense
if not 0.0 <= dropout < 1.0:
    fail(f"dropout must be in [0, 1), got {dropout}")
if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
    fail(f"beta1 and beta2 must be in [0, 1), got {beta1} and {beta2}")
if not (learning_rate >= 0 and weight_decay >= 0 and grad_clip >= 0 and max_iters >= 0 and warmup_iters >= 0):
    fail("learning_rate, weight_decay, grad_clip, max_iters and warmup_iters must be >= 0")
device_type = "cuda" if "cuda" in device else "cpu"  # for later use in torch.autocast
if device_type == "cuda" and not torch.cuda.is_available():
    fail(f"device={device} but CUDA is not available; train on the CPU with --device=cpu --compile=False")
ddp_local_rank = int(os.environ.get("LOCAL_RANK", 0))
if ddp and device_type == "cuda":
    # each rank takes its own GPU before any other CUDA call, or every rank opens a context on GPU 0
    n_gpus = torch.cuda.device_count()
    nproc = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    if nproc > n_gpus:
        if ddp_local_rank != 0:
            sys.exit(1)  # one line from local rank 0 says it
        fail(f"--nproc_per_node={nproc} but this machine has {n_gpus} visible GPU(s): "
             f"use --nproc_per_node={n_gpus} (or CUDA_VISIBLE_DEVICES to pick them)")
    device = f"cuda:{ddp_local_rank}"
try:
    if device_type == "cuda" and torch.device(device).index is not None:
        torch.cuda.set_device(device)  # also --device=cuda:1 alone: the CUDA RNG state calls act on it
    torch.empty(0, device=device)
except Exception as e:  # a typo such as --device=cpuu, or mps on a machine without it
    fail(f"device={device} is not usable: {first_line(e, with_type=True)}")
if device_type == "cuda" and dtype == "bfloat16" and not torch.cuda.is_bf16_supported(including_emulation=False):
    fail(f"{torch.cuda.get_device_name()} has no bfloat16 (V100, T4, ...): train with --dtype=float16")

# various inits, derived attributes, I/O setup
if ddp:
    try:
        # device_id binds NCCL to this rank's GPU at once (no guessing from the current device)
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo",
                                device_id=torch.device(device) if device_type == "cuda" else None)
    except Exception as e:
        fail(f"cannot start the process group: {first_line(e, with_type=True)}")
    ddp_rank = dist.get_rank()
    ddp_world_size = dist.get_world_size()
    master_process = ddp_rank == 0  # this process will do logging, checkpointing etc.
    seed_offset = ddp_rank  # each process gets a different seed
    # world_size number of processes will be training simultaneously, so we can scale
    # down the desired gradient accumulation iterations per process proportionally
    if gradient_accumulation_steps % ddp_world_size != 0:
        fail(f"gradient_accumulation_steps ({gradient_accumulation_steps}) must be divisible by "
             f"the number of processes ({ddp_world_size})")
    gradient_accumulation_steps //= ddp_world_size
else:
    # if not ddp, we are running on a single gpu, and one process
    master_process = True
    seed_offset = 0
    ddp_world_size = 1
tokens_per_iter = gradient_accumulation_steps * ddp_world_size * batch_size * max_seq_len
if master_process:
    print("config:", json.dumps(config))
    print(f"tokens per iteration will be: {tokens_per_iter:,}")
    print(f"breaks down as: {gradient_accumulation_steps} grad accum steps * {ddp_world_size} processes "
          f"* {batch_size} batch size * {max_seq_len} max seq len")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        fail(f"cannot create out_dir {out_dir}: {e.strerror}")
    try:  # held until this process ends: a second run (or an orphaned rank) must not write here too
        out_dir_lock = lock_folder(out_dir, "another training run")
    except (ValueError, OSError) as e:
        fail(str(e))
torch.manual_seed(seed + seed_offset)
if device_type == "cuda":
    torch.backends.cuda.matmul.allow_tf32 = True  # allow tf32 on matmul
    torch.backends.cudnn.allow_tf32 = True  # allow tf32 on cudnn
# Apple GPUs (mps) take the CPU's path: float32 without autocast (mps autocast has no bfloat16 before
# macOS 14, and the GradScaler is CUDA's), no fused AdamW (model.py asks for it on CUDA only), and no
# torch.compile, whose generated kernels target CUDA and CPUs
on_mps = device.startswith("mps")
if on_mps and compile:
    if master_process:
        print("note: --compile=True is ignored on mps (the model runs eagerly)")
    compile = False
if device_type == "cpu" and dtype != "float32":
    # bf16 autocast is slower than float32 on CPUs without AVX512_BF16/AMX (bench/README.md, Training)
    if master_process:
        where = "on Apple GPUs (mps)" if on_mps else "on the CPU"
        print(f"note: {where} training runs in float32 (--dtype={dtype} applies to CUDA GPUs)")
    dtype = "float32"
ptdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
# autocast on the GPU only: the CPU path is plain float32 (as the original)
ctx = nullcontext() if device_type == "cpu" else torch.amp.autocast(device_type=device_type, dtype=ptdtype)

# data: one random-window stream per rank; its state goes into the checkpoint
try:
    if task == "sft":
        from instruct import TEMPLATE, SFTStream as Stream
        stream_args = dict(batch_size=batch_size, max_seq_len=max_seq_len, vocab_size=vocab_size, data_root=data_root)
        config["template"] = TEMPLATE  # the prompt the shards were made with, kept with the model
    else:
        from tinystories import BatchStream as Stream
        stream_args = dict(batch_size=batch_size, max_seq_len=max_seq_len, vocab_size=vocab_size,
                           vocab_source=vocab_source, data_root=data_root)
    train_stream = Stream("train", seed=seed, rank=ddp_rank, **stream_args)
    val_stream = Stream("val", seed=seed, rank=0, **stream_args)  # fail now, not at the first eval
    if task == "sft" and master_process:
        print(f"SFT: {len(train_stream.examples)} training pairs, {len(val_stream.examples)} validation pairs"
              + (f"; {train_stream.dropped} longer than max_seq_len+1 left out" if train_stream.dropped else ""))
except ImportError as e:
    fail(f"cannot import the data loader: {first_line(e, with_type=True)}")
except Exception as e:  # missing or bad shards: the loader's message says what to run
    fail(first_line(e))

# model init
model_args = dict(dim=dim, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads,
                  vocab_size=vocab_size, multiple_of=multiple_of, max_seq_len=max_seq_len, dropout=dropout)
iter_num = 0
best_val_loss = 1e9
checkpoint = None
if init_from == "scratch":
    if master_process:
        print("Initializing a new model from scratch")
    gptconf = ModelArgs(**model_args)
    model = Transformer(gptconf)
elif init_from != "resume":
    # a pretrained model to fine-tune: its shape, our context (RoPE is computed, so max_seq_len may grow)
    if master_process:
        print(f"Initializing from the weights of {init_from}")
    try:
        init_model = load_checkpoint(init_from) if init_from.endswith(".pt") else load_model_bin(init_from)
    except ValueError as e:
        fail(str(e))
    p = init_model.params
    if p.vocab_size != vocab_size:
        fail(f"{init_from} has vocab_size={p.vocab_size}, not {vocab_size}: use --vocab_size={p.vocab_size} "
             "and data pretokenized with its vocabulary")
    # hidden_dim from the weights (a .bin has no multiple_of to derive it from)
    model_args.update(dim=p.dim, n_layers=p.n_layers, n_heads=p.n_heads, n_kv_heads=p.n_kv_heads,
                      hidden_dim=init_model.layers[0].feed_forward.w1.weight.shape[0], norm_eps=p.norm_eps)
    for k in ("dim", "n_layers", "n_heads", "n_kv_heads"):
        config[k] = model_args[k]  # the checkpoint's config says what was trained
    model = Transformer(ModelArgs(**model_args))
    if not shares_classifier(init_model):
        untie_classifier(model)
    model.load_state_dict(init_model.state_dict())
    init_model = None
else:
    ckpt_path = os.path.join(out_dir, "ckpt.pt")
    if master_process:
        print(f"Resuming training from {out_dir}")
    if not os.path.exists(ckpt_path):
        fail(f"init_from=resume but there is no checkpoint at {ckpt_path}")
    try:
        checkpoint = torch_load(ckpt_path, map_location=device)
        checkpoint_model_args = checkpoint["model_args"]
        ckpt_task = checkpoint.get("config", {}).get("task", "pretrain")
        if ckpt_task != task:  # the data stream's state belongs to the other kind of data
            fail(f"the checkpoint in {out_dir} was trained with task={ckpt_task}: resume with --task={ckpt_task}")
        # the model's shape comes from the checkpoint; the rest (e.g. dropout) can change on resume
        shape_keys = ["dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "multiple_of", "max_seq_len"]
        for k in shape_keys:
            model_args[k] = checkpoint_model_args[k]
        # a shape flag the user gave must agree (it would be ignored otherwise), and so must the two the
        # data stream is already cut for, given or not (a different value crashes in the forward pass)
        differ = [k for k in shape_keys if model_args[k] != config[k]
                  and (k in config_given or k in ("vocab_size", "max_seq_len"))]
        if differ:
            said = "; ".join((f"--{k}={config[k]}" if k in config_given else f"{k}={config[k]} (the default)")
                             + f" but the checkpoint has {k}={model_args[k]}" for k in differ)
            fail(f"the checkpoint in {out_dir} is another model: {said}; resume with "
                 + " ".join(f"--{k}={model_args[k]}" for k in differ) + ", or start a new out_dir")
        for k in shape_keys:  # the config saved in the next checkpoint says what was trained
            config[k] = model_args[k]
        for k in ["hidden_dim", "norm_eps"]:  # kept only by a model fine-tuned from init_from's weights
            if k in checkpoint_model_args:
                model_args[k] = checkpoint_model_args[k]
        gptconf = ModelArgs(**model_args)
        # torch.compile prefixes keys with _orig_mod.
        state_dict = {k.removeprefix("_orig_mod."): v for k, v in checkpoint["model"].items()}
        check_shapes(gptconf, state_dict)  # before the model is built: crafted model_args cost nothing
        model = Transformer(gptconf)
        model.load_state_dict(state_dict)
        iter_num = int(checkpoint["iter_num"])
        best_val_loss = float(checkpoint["best_val_loss"])
    except Exception as e:
        fail(f"cannot resume from {ckpt_path} (corrupt or incompatible checkpoint): {first_line(e, with_type=True)}")
    data_states = checkpoint.get("data_state") or []
    if len(data_states) == ddp_world_size:
        try:
            train_stream.load_state_dict(data_states[ddp_rank])
        except Exception as e:
            fail(f"cannot restore the data stream from {ckpt_path}: {first_line(e, with_type=True)}")
        rng_states = checkpoint.get("rng_state") or []
        if len(rng_states) == ddp_world_size:  # dropout masks continue as well
            torch.set_rng_state(rng_states[ddp_rank].cpu())
        cuda_rng_states = checkpoint.get("cuda_rng_state") or []
        if device_type == "cuda" and len(cuda_rng_states) == ddp_world_size:
            torch.cuda.set_rng_state(cuda_rng_states[ddp_rank].cpu())
    elif master_process:
        print(f"warning: the checkpoint was written by {len(data_states)} processes, this run has "
              f"{ddp_world_size}: the data streams start afresh")
model.to(device)

# initialize a GradScaler. If enabled=False scaler is a no-op
scaler = torch.amp.GradScaler(device_type, enabled=(dtype == "float16"))

# optimizer
optimizer = model.configure_optimizers(weight_decay, learning_rate, (beta1, beta2), device_type,
                                       verbose=master_process)
if checkpoint is not None:
    try:
        optimizer.load_state_dict(checkpoint["optimizer"])
        if "scaler" in checkpoint and dtype == "float16":
            scaler.load_state_dict(checkpoint["scaler"])
    except Exception as e:
        fail(f"cannot restore the optimizer from the checkpoint: {first_line(e, with_type=True)}")
checkpoint = None  # free up memory

# compile the model
raw_model = model  # the plain Transformer: for export, checkpoints and last_loss
if compile:
    if master_process:
        print("compiling the model... (takes a ~minute)")
    model = torch.compile(model)  # requires PyTorch 2.0
eval_model = model  # compiled but not DDP-wrapped: evaluation needs no gradient sync

# wrap model into DDP container
if ddp:
    # the RoPE tables are derived data, identical on every rank: nothing to broadcast
    prefix = "_orig_mod." if compile else ""
    model._ddp_params_and_buffers_to_ignore = {prefix + "freqs_cos", prefix + "freqs_sin"}
    model = DDP(model, device_ids=[ddp_local_rank] if device_type == "cuda" else None)


def next_batch(stream):
    try:
        return stream.next_batch(device)
    except ValueError as e:  # e.g. token ids beyond vocab_size: shards of another vocabulary
        fail(str(e))


@torch.no_grad()
def estimate_loss():
    """Mean loss over eval_iters batches of each split, from fresh fixed-seed streams, so every
    eval sees the same batches and the training stream is left untouched."""
    out = {}
    eval_model.eval()
    for split in ["train", "val"]:
        stream = Stream(split, seed=seed + 1, rank=0, **stream_args)
        losses = torch.zeros(eval_iters)
        for k in range(eval_iters):
            X, Y = next_batch(stream)
            with ctx:
                eval_model(X, Y)
            losses[k] = raw_model.last_loss.item()
        out[split] = losses.mean().item()
    eval_model.train()
    return out


def get_lr(it):
    """Linear warmup, then cosine decay to min_lr at lr_decay_iters."""
    if it < warmup_iters:
        return learning_rate * it / warmup_iters
    if it > lr_decay_iters or lr_decay_iters <= warmup_iters:
        return min_lr
    decay_ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))  # coeff ranges 0..1
    return min_lr + coeff * (learning_rate - min_lr)


def save_checkpoint_file(obj, path):
    write_atomic(lambda tmp: torch.save(obj, tmp), path, nbytes(obj))


def append_metrics(record):
    path = os.path.join(out_dir, "metrics.jsonl")
    line = json.dumps(record) + "\n"
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line)
    except OSError as e:
        raise disk_full(e, path, len(line)) or e


def trim_metrics(before):
    """Keep the rows of metrics.jsonl for the iterations before `before` (where this run starts):
    the rows a killed run wrote after its last checkpoint are logged again, and a resumed run's
    file must read like an uninterrupted one. A torn last line goes too."""
    path = os.path.join(out_dir, "metrics.jsonl")
    try:
        with open(path, "rb") as f:
            lines = f.read().splitlines(keepends=True)
    except FileNotFoundError:
        return
    keep = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("iter"), int) and rec["iter"] < before:
            keep.append(line if line.endswith(b"\n") else line + b"\n")
    if len(keep) != len(lines) or (lines and not lines[-1].endswith(b"\n")):
        write_bytes_atomic(path, keep)  # atomic: a kill now leaves the old rows or the trimmed ones


def gather(obj):
    """obj from every rank, as a list indexed by rank (every rank must call this)."""
    if not ddp:
        return [obj]
    out = [None] * ddp_world_size
    dist.all_gather_object(out, obj)
    return out


# logging
if wandb_log and master_process:
    try:
        import wandb
    except ImportError:
        fail("wandb_log=True but wandb is not installed (pip install wandb)")
    wandb.init(project=wandb_project, name=wandb_run_name, config=config)

# MFU is quoted against the GPU's dense bf16 peak; a CPU has none to quote, an unknown GPU neither
peak = None
if device_type == "cuda":
    peak = gpu_peak_flops(torch.cuda.get_device_name())
    if master_process:
        print(f"GPU: {torch.cuda.get_device_name()}, MFU against "
              + (f"{peak / 1e12:g} TFLOP/s (dense bf16)" if peak else "n/a (not in gpus.GPU_PEAK_FLOPS)"))

if master_process:
    try:
        trim_metrics(iter_num)
    except (ValueError, OSError) as e:
        fail(f"cannot trim {out_dir}/metrics.jsonl to iteration {iter_num}: {e}")

# training loop
pending_state = train_stream.state_dict()  # the stream's state before the batch held in X, Y
X, Y = next_batch(train_stream)  # fetch the very first batch
t0 = time.time()
local_iter_num = 0  # number of iterations in the lifetime of this process
saved_iter = iter_num if init_from == "resume" else None  # the iteration out_dir/ckpt.pt holds
running_mfu = -1.0
running_dt = None
try:
    while True:
        # determine and set the learning rate for this iteration
        lr = get_lr(iter_num) if decay_lr else learning_rate
        for param_group in optimizer.param_groups:
            param_group["lr"] = lr

        # evaluate the loss on train/val sets and write checkpoints
        if iter_num % eval_interval == 0:
            # every rank's stream and RNG state, so a resume continues each rank's stream exactly
            data_states = gather(pending_state)
            rng_states = gather(torch.get_rng_state())
            cuda_rng_states = gather(torch.cuda.get_rng_state()) if device_type == "cuda" else []
            if master_process:
                losses = estimate_loss()
                print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}", flush=True)
                append_metrics({"iter": iter_num, "train_loss": losses["train"], "val_loss": losses["val"],
                                "lr": lr, "tokens": iter_num * tokens_per_iter})
                if wandb_log:
                    wandb.log({"iter": iter_num, "tokens": iter_num * tokens_per_iter, "loss/train": losses["train"],
                               "loss/val": losses["val"], "lr": lr, "mfu": running_mfu * 100})
                if losses["val"] < best_val_loss or always_save_checkpoint:
                    best_val_loss = min(best_val_loss, losses["val"])
                    if iter_num > 0:
                        checkpoint = {
                            "model": raw_model.state_dict(),
                            "optimizer": optimizer.state_dict(),
                            "model_args": model_args,
                            "iter_num": iter_num,
                            "best_val_loss": best_val_loss,
                            "config": config,
                            "world_size": ddp_world_size,
                            "data_state": data_states,
                            "rng_state": rng_states,
                            "cuda_rng_state": cuda_rng_states,
                        }
                        if dtype == "float16":
                            checkpoint["scaler"] = scaler.state_dict()
                        print(f"saving checkpoint to {out_dir}", flush=True)
                        save_checkpoint_file(checkpoint, os.path.join(out_dir, "ckpt.pt"))
                        saved_iter = iter_num
                        write_atomic(lambda tmp: model_export(raw_model, tmp, version=0),
                                     os.path.join(out_dir, "model.bin"), export_size(raw_model, 0))
                        checkpoint = None
        if iter_num == 0 and eval_only:
            break

        # forward backward update, with optional gradient accumulation to simulate larger batch size
        # and using the GradScaler if data type is float16
        for micro_step in range(gradient_accumulation_steps):
            if ddp:
                # only sync gradients at the last micro step (the official way is no_sync())
                model.require_backward_grad_sync = micro_step == gradient_accumulation_steps - 1
            with ctx:
                model(X, Y)
                loss = raw_model.last_loss
                loss = loss / gradient_accumulation_steps
            # immediately async prefetch next batch while model is doing the forward pass on the GPU
            pending_state = train_stream.state_dict()
            X, Y = next_batch(train_stream)
            # backward pass, with gradient scaling if training in fp16
            scaler.scale(loss).backward()
        # clip the gradient
        if grad_clip != 0.0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        # step the optimizer and scaler if training in fp16
        scaler.step(optimizer)
        scaler.update()
        # flush the gradients as soon as we can, no need for this memory anymore
        optimizer.zero_grad(set_to_none=True)

        # timing and logging
        t1 = time.time()
        dt = t1 - t0
        t0 = t1
        if iter_num % log_interval == 0 and master_process:
            # get loss as float, scale up due to the divide above. note: this is a CPU-GPU sync point
            lossf = loss.item() * gradient_accumulation_steps
            if local_iter_num >= 5:  # let the training loop settle a bit
                running_dt = dt if running_dt is None else 0.9 * running_dt + 0.1 * dt
                if peak is not None:  # one GPU's share: this rank's sequences over one GPU's peak
                    mfu = raw_model.estimate_mfu(batch_size * gradient_accumulation_steps, dt, peak)
                    running_mfu = mfu if running_mfu == -1.0 else 0.9 * running_mfu + 0.1 * mfu
            tok_s = tokens_per_iter / dt
            eta_s = (max_iters - iter_num) * (running_dt if running_dt is not None else dt)
            mfu_str = f"{running_mfu * 100:.2f}%" if peak is not None else "n/a"
            record = {"iter": iter_num, "loss": lossf, "lr": lr, "dt_ms": dt * 1000, "tok_per_s": tok_s,
                      "mfu": running_mfu if peak is not None else None, "eta_s": eta_s}
            mem_str = ""
            if device_type == "cuda":
                record["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
                mem_str = f" | mem {record['peak_mem_gib']:.1f}GiB"
            print(f"{iter_num} | loss {lossf:.4f} | lr {lr:e} | {dt * 1000:.2f}ms | {tok_s:,.0f} tok/s "
                  f"| mfu {mfu_str}{mem_str} | eta {eta_s / 3600:.2f}h", flush=True)
            append_metrics(record)
        iter_num += 1
        local_iter_num += 1

        # termination conditions
        if iter_num > max_iters:
            break
except DiskFull as e:  # the old files are whole (fileio.write_atomic): say which checkpoint is kept
    kept = f"{out_dir}/ckpt.pt still holds iteration {saved_iter}" if saved_iter is not None else "no checkpoint of this run was written"
    fail(f"{e}; {kept}")
except OSError as e:
    fail(f"{first_line(e, with_type=True)} (while writing to {out_dir})")

if ddp:
    # Leave through os._exit: gloo's worker threads can still hold the last collective's tensors,
    # and releasing them during interpreter shutdown aborts the process ("terminate called without
    # an active exception", 1-2% of runs here) after all the work is done and written.
    dist.barrier()
    dist.destroy_process_group()
    if wandb_log and master_process:
        wandb.finish()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
