"""Tests for train.py: real runs on tiny models and tiny pretokenized shards,
single process and DDP through torchrun (gloo on the CPU): learning, checkpoints, exact resume,
kill -9 during a save, gradient averaging across ranks, 2 "nodes" on 127.0.0.1, bad input."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from export import load_model_bin
from faults import small_disk

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "train.py")
PROBE = os.path.join(ROOT, "tests", "train_probe.py")  # train.py with instruments attached from outside
VOCAB = 64

TINY = ["--vocab_source=custom", f"--vocab_size={VOCAB}", "--device=cpu", "--compile=False",
        "--dtype=float32", "--batch_size=4", "--max_seq_len=16", "--dim=32", "--n_layers=2",
        "--n_heads=4", "--n_kv_heads=2", "--multiple_of=16", "--eval_iters=2", "--log_interval=1",
        "--warmup_iters=2", "--learning_rate=1e-2", "--gradient_accumulation_steps=1"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """Pretokenized shards as tinystories.py writes them: uint16 [BOS] + story + [EOS], shard 0 = val.
    Eight short "stories" repeat, so a tiny model can learn them quickly."""
    root = tmp_path_factory.mktemp("data")
    (root / f"tok{VOCAB}").mkdir()
    rng = np.random.default_rng(0)
    stories = [np.concatenate([[1], rng.integers(3, VOCAB, size=20), [2]]) for _ in range(8)]
    for i in range(3):
        order = rng.integers(0, 8, size=300)
        np.concatenate([stories[j] for j in order]).astype(np.uint16).tofile(root / f"tok{VOCAB}" / f"shard{i:02d}.bin")
    return str(root)


def env(**extra):
    e = dict(os.environ)
    e["OMP_NUM_THREADS"] = "1"  # the test machine is shared; also keeps runs deterministic
    e.update(extra)
    return e


def train(out_dir, data_root, *args, extra_env=None, timeout=120, preexec_fn=None):
    cmd = [sys.executable, TRAIN, *TINY, f"--data_root={data_root}", f"--out_dir={out_dir}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env(**(extra_env or {})), timeout=timeout,
                          preexec_fn=preexec_fn)


def torchrun(launch_args, out_dir, data_root, *args, probe=(), extra_env=None, timeout=180):
    """probe: train_probe.py options (the run goes through the probe when given)."""
    script = [PROBE, *probe] if probe else [TRAIN]
    cmd = [sys.executable, "-m", "torch.distributed.run", *launch_args, *script, *TINY,
           f"--data_root={data_root}", f"--out_dir={out_dir}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env(**(extra_env or {})), timeout=timeout)


def load_ckpt(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_state(a, b):
    assert a["iter_num"] == b["iter_num"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        for k in sa[i]:
            assert torch.equal(sa[i][k], sb[i][k]), (i, k)


def test_single_process_learns_and_saves(tmp_path, data_root):
    out = tmp_path / "out"
    r = train(out, data_root, "--max_iters=40", "--eval_interval=20", "--dtype=bfloat16")
    assert r.returncode == 0, r.stderr
    assert "tokens per iteration will be: 64" in r.stdout
    assert "tok/s" in r.stdout and "eta" in r.stdout and "| mfu n/a |" in r.stdout
    # bf16 autocast is slower than float32 on CPUs without bf16 units: the CPU trains in float32, and says so
    assert r.stdout.count("note: on the CPU training runs in float32 (--dtype=bfloat16 applies to CUDA GPUs)") == 1
    points = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_points = [p for p in points if "loss" in p]
    evals = [p for p in points if "val_loss" in p]
    assert len(train_points) == 41 and [p["iter"] for p in evals] == [0, 20, 40]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 1.0  # learned the repeating stories
    ck = load_ckpt(out / "ckpt.pt")
    assert {"model", "optimizer", "model_args", "iter_num", "best_val_loss", "config", "data_state"} <= ck.keys()
    assert ck["iter_num"] == 40 and ck["config"]["dim"] == 32 and len(ck["data_state"]) == 1
    m = load_model_bin(str(out / "model.bin"))  # v0 export of the same weights
    for k, v in m.state_dict().items():
        assert torch.equal(v, ck["model"][k]), k
    # plot_metrics.py reads every point train.py logged
    from plot_metrics import read_metrics
    assert [len(x) for x in read_metrics(str(out / "metrics.jsonl"))] == [len(train_points), len(evals)]


def test_resume_is_exact(tmp_path, data_root):
    common = ["--eval_interval=3", "--always_save_checkpoint=True", "--dropout=0.1"]
    a, b = tmp_path / "a", tmp_path / "b"
    r = train(a, data_root, "--max_iters=6", *common)
    assert r.returncode == 0, r.stderr
    r = train(b, data_root, "--max_iters=3", *common)
    assert r.returncode == 0, r.stderr
    assert load_ckpt(b / "ckpt.pt")["iter_num"] == 3
    r = train(b, data_root, "--max_iters=6", "--init_from=resume", *common)
    assert r.returncode == 0, r.stderr
    assert_same_state(load_ckpt(a / "ckpt.pt"), load_ckpt(b / "ckpt.pt"))


def test_kill_during_checkpoint_save_keeps_previous_checkpoint(tmp_path, data_root):
    out = tmp_path / "out"
    # each of torch.save's ~400 writes pauses 3 ms: a save takes over a second, the kill lands inside one
    cmd = [sys.executable, PROBE, "--slow_save=0.003", *TINY, f"--data_root={data_root}", f"--out_dir={out}",
           "--max_iters=1000", "--eval_interval=1", "--always_save_checkpoint=True"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env())
    ckpt = out / "ckpt.pt"

    def temps():  # fileio.write_atomic's temporary files: ckpt.pt.<random>.tmp
        return [t for t in out.glob("ckpt.pt.*.tmp") if t.stat().st_size > 0]

    try:
        deadline = time.time() + 90
        while not ckpt.exists():  # the first checkpoint (iter 1) is complete
            assert p.poll() is None and time.time() < deadline, p.stderr.read() if p.poll() is not None else "timeout"
            time.sleep(0.05)
        while not temps():  # the next one is being written
            assert p.poll() is None and time.time() < deadline
            time.sleep(0.02)
        time.sleep(0.3)  # well inside the ~1.3 s write
        assert p.poll() is None
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    # the half-written temp file is garbage, and the previous checkpoint is intact
    (tmp,) = temps()
    with pytest.raises(RuntimeError, match="PytorchStreamReader failed reading zip archive"):
        load_ckpt(tmp)
    ck = load_ckpt(ckpt)
    n = ck["iter_num"]
    assert n >= 1
    # the killed run's lock went with it; the resumed run's first save removes the leftover
    r = train(out, data_root, f"--max_iters={n + 1}", "--eval_interval=1", "--init_from=resume",
              "--always_save_checkpoint=True")
    assert r.returncode == 0, r.stderr
    assert load_ckpt(ckpt)["iter_num"] == n + 1
    assert not list(out.glob("*.tmp"))


def test_second_run_on_the_same_out_dir_is_refused(tmp_path, data_root):
    # orphaned ranks of a killed torchrun kept checkpointing into out_dir; a new run collided with them
    from fileio import lock_folder
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]); "
                               "from fileio import lock_folder; lock_folder(sys.argv[2]); print('locked', flush=True); "
                               "time.sleep(60)", ROOT, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        err = one_line_error(train(out, data_root, "--max_iters=1"))
        assert err == f"error: {out}/ is in use by another training run (pid {holder.pid})", err
        assert not (out / "ckpt.pt").exists()
    finally:
        holder.kill()
        holder.wait()
    # kill -9 drops the lock with the process
    fd = lock_folder(str(out))
    os.close(fd)
    r = train(out, data_root, "--max_iters=1", "--eval_interval=1")
    assert r.returncode == 0, r.stderr


def one_line_error(r):
    assert r.returncode != 0
    err = r.stderr.strip()
    assert "Traceback" not in err and err.count("\n") == 0 and err.startswith("error:"), err
    return err


def test_bad_input_one_line_errors(tmp_path, data_root):
    out = tmp_path / "out"
    err = one_line_error(train(out, data_root, "--bogus=1"))
    assert "unknown setting 'bogus'" in err
    err = one_line_error(train(out, data_root, "--batch_size=abc"))
    assert "batch_size" in err and "int" in err
    err = one_line_error(train(out, data_root, "--vocab_source=gpt"))
    assert "vocab_source" in err
    # an Apple GPU asked for where there is none (macOS's path is only read here, not run)
    err = one_line_error(train(out, data_root, "--device=mps"))
    assert "device=mps is not usable" in err
    # no data; the seed's 15M settings on one process give the tokens-per-iteration line of the README
    (tmp_path / "empty").mkdir()
    r = train(out, str(tmp_path / "empty"), "--batch_size=128", "--max_seq_len=256", "--gradient_accumulation_steps=4")
    assert "tokens per iteration will be: 131,072" in r.stdout
    err = one_line_error(r)
    assert "pretokenize" in err
    err = one_line_error(train(tmp_path / "nockpt", data_root, "--init_from=resume"))
    assert "no checkpoint" in err
    (out / "ckpt.pt").write_bytes(b"PK\x03\x04" + os.urandom(200))
    err = one_line_error(train(out, data_root, "--init_from=resume"))
    assert "corrupt" in err


def test_bad_values_fail_before_training(tmp_path, data_root):
    # torch used to reject these with a traceback from deep inside (dropout, head size) or makedirs (out_dir)
    err = one_line_error(train(tmp_path / "out", data_root, "--dropout=1.5"))
    assert "dropout" in err
    err = one_line_error(train(tmp_path / "out", data_root, "--dim=12", "--n_heads=4", "--n_kv_heads=2"))
    assert "head size" in err and "even" in err
    (tmp_path / "file").write_text("not a folder")
    err = one_line_error(train(tmp_path / "file", data_root))
    assert "out_dir" in err


def test_resume_with_another_max_seq_len_and_shards_of_another_vocab(tmp_path, data_root):
    # the checkpoint's model_args are checked before anything is loaded: a stub is enough
    out = tmp_path / "out"
    out.mkdir()
    args = dict(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=VOCAB, multiple_of=16, max_seq_len=8)
    torch.save({"model_args": args, "model": {}}, out / "ckpt.pt")
    err = one_line_error(train(out, data_root, "--init_from=resume"))  # TINY says max_seq_len=16
    assert "max_seq_len=8" in err and "--max_seq_len=8" in err
    # shards with ids >= vocab_size: a clear error, not an IndexError from the embedding
    bad = tmp_path / "bad"
    (bad / f"tok{VOCAB}").mkdir(parents=True)
    for i in range(2):
        np.full(100, VOCAB + 5, dtype=np.uint16).tofile(bad / f"tok{VOCAB}" / f"s{i}.bin")
    err = one_line_error(train(tmp_path / "out2", str(bad)))
    assert f"token id {VOCAB + 5}" in err


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_ranks_average_gradients_and_resume_exactly(tmp_path, data_root):
    dump = tmp_path / "dump"
    dump.mkdir()
    common = ["--gradient_accumulation_steps=4", "--eval_interval=2", "--always_save_checkpoint=True",
              "--grad_clip=0.5"]
    standalone = ["--standalone", "--nproc_per_node=2"]
    r = torchrun(standalone, tmp_path / "a", data_root, "--max_iters=4", *common, probe=[f"--dump={dump}"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "breaks down as: 2 grad accum steps * 2 processes * 4 batch size * 16 max seq len" in r.stdout
    assert "tokens per iteration will be: 256" in r.stdout
    assert r.stdout.count("num decayed parameter tensors") == 1  # rank 0 only

    from model import ModelArgs, Transformer
    ck = load_ckpt(tmp_path / "a" / "ckpt.pt")
    assert len(ck["data_state"]) == 2 and ck["world_size"] == 2
    model = Transformer(ModelArgs(**ck["model_args"]))
    for it in range(5):
        d0 = torch.load(dump / f"rank0_iter{it}.pt", weights_only=True)
        d1 = torch.load(dump / f"rank1_iter{it}.pt", weights_only=True)
        for k in d0["params"]:
            assert torch.equal(d0["params"][k], d1["params"][k]), (it, k)  # ranks in lockstep
        assert len(d0["xs"]) == 2 and not torch.equal(d0["xs"][0], d1["xs"][0])  # different data
        # the all-reduced, clipped gradient == one process's on the union of both ranks' batches
        model.load_state_dict(d0["params"])
        model.zero_grad()
        batches = list(zip(d0["xs"] + d1["xs"], d0["ys"] + d1["ys"]))
        for x, y in batches:
            model(x, y)
            (model.last_loss / len(batches)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        for k, p in model.named_parameters():
            torch.testing.assert_close(d0["grads"][k], p.grad, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(d1["grads"][k], p.grad, rtol=1e-5, atol=1e-6)
    f0 = torch.load(dump / "rank0_final.pt", weights_only=True)
    f1 = torch.load(dump / "rank1_final.pt", weights_only=True)
    assert all(torch.equal(f0[k], f1[k]) for k in f0)

    # resume with the same world size continues both ranks' streams exactly
    r = torchrun(standalone, tmp_path / "b", data_root, "--max_iters=2", *common)
    assert r.returncode == 0, r.stderr[-3000:]
    r = torchrun(standalone, tmp_path / "b", data_root, "--max_iters=4", "--init_from=resume", *common)
    assert r.returncode == 0, r.stderr[-3000:]
    assert_same_state(ck, load_ckpt(tmp_path / "b" / "ckpt.pt"))


def test_two_nodes_on_localhost(tmp_path, data_root):
    port = free_port()
    procs = []
    for node_rank in (0, 1):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
               f"--node_rank={node_rank}", "--master_addr=127.0.0.1", f"--master_port={port}",
               TRAIN, *TINY, f"--data_root={data_root}", f"--out_dir={tmp_path / 'out'}",
               "--max_iters=3", "--eval_interval=3", "--gradient_accumulation_steps=2"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env()))
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, e[-3000:]
    assert "1 grad accum steps * 2 processes" in outs[0][0]
    ck = load_ckpt(tmp_path / "out" / "ckpt.pt")
    assert ck["iter_num"] == 3 and len(ck["data_state"]) == 2


@pytest.fixture(scope="module")
def sft_root(data_root):
    """SFT shards as instruct.py writes them (FORMATS.md): uint16 [BOS] prompt story [EOS] per pair and
    uint32 (start, story start) pairs in .idx. The prompts are random, so only a model trained on the
    story tokens alone gets a low loss; the stories are four fixed ones."""
    root = os.path.join(data_root, f"sft{VOCAB}")
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(1)
    stories = [rng.integers(3, VOCAB, size=10) for _ in range(4)]
    for i in range(3):
        tokens, index = [], []
        for _ in range(200):
            prompt = rng.integers(3, VOCAB, size=12)
            index += [len(tokens), len(tokens) + 13]
            tokens += [1, *prompt, *stories[rng.integers(0, 4)], 2]
        np.array(tokens, dtype=np.uint16).tofile(os.path.join(root, f"shard{i:02d}.bin"))
        np.array(index, dtype=np.uint32).tofile(os.path.join(root, f"shard{i:02d}.idx"))
    return data_root


def test_sft_from_a_bin_masks_the_prompt_and_resumes_exactly(tmp_path, sft_root):
    base = tmp_path / "base"
    r = train(base, sft_root, "--max_iters=4", "--eval_interval=4")
    assert r.returncode == 0, r.stderr
    sft = ["--task=sft", f"--init_from={base / 'model.bin'}", "--max_seq_len=32", "--batch_size=8",
           "--eval_interval=40", "--always_save_checkpoint=True", "--decay_lr=False"]
    a, b = tmp_path / "a", tmp_path / "b"
    r = train(a, sft_root, "--max_iters=80", *sft)
    assert r.returncode == 0, r.stderr
    assert "SFT: 400 training pairs, 200 validation pairs" in r.stdout
    evals = [json.loads(x) for x in (a / "metrics.jsonl").read_text().splitlines() if "val_loss" in x]
    # the loss counts the story and its EOS only: the random prompt (12 of 23 targets, ln 61 each)
    # would hold an unmasked loss above 2
    assert evals[0]["val_loss"] > 2.0 and evals[-1]["val_loss"] < 0.6, evals
    ck = load_ckpt(a / "ckpt.pt")
    assert ck["config"]["template"] == "[INST] {instruction} [/INST]" and ck["config"]["task"] == "sft"
    assert ck["model_args"]["max_seq_len"] == 32 and ck["model_args"]["dim"] == 32
    # resumable like pretraining: 40 + 40 steps end where 80 did (a constant learning rate: the
    # schedule depends on max_iters)
    r = train(b, sft_root, "--max_iters=40", *sft)
    assert r.returncode == 0, r.stderr
    r = train(b, sft_root, "--max_iters=80", "--init_from=resume", sft[0], *sft[2:])
    # a checkpoint of one task does not resume as the other
    assert "--task=sft" in one_line_error(train(b, sft_root, "--max_iters=90", "--init_from=resume", *sft[2:]))
    assert r.returncode == 0, r.stderr
    assert_same_state(load_ckpt(a / "ckpt.pt"), load_ckpt(b / "ckpt.pt"))


def test_sft_bad_inputs_one_line_errors(tmp_path, sft_root, data_root):
    assert "task must be" in one_line_error(train(tmp_path / "o1", sft_root, "--task=chat"))
    assert "init_from must be" in one_line_error(train(tmp_path / "o2", sft_root, "--task=sft",
                                                       "--init_from=no/such.bin"))
    other = tmp_path / "other.bin"
    from export import model_export
    from model import ModelArgs, Transformer
    model_export(Transformer(ModelArgs(dim=32, n_layers=1, n_heads=4, vocab_size=VOCAB + 1, max_seq_len=16)), str(other))
    err = one_line_error(train(tmp_path / "o3", sft_root, "--task=sft", f"--init_from={other}", "--max_seq_len=32"))
    assert f"vocab_size={VOCAB + 1}" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "instruct.py pretokenize" in one_line_error(train(tmp_path / "o4", str(empty), "--task=sft"))


@pytest.mark.parametrize("mode", ["rlimit", "tmpfs"])
def test_full_disk_during_checkpoint_save_is_one_line(tmp_path, data_root, mode):
    first = tmp_path / "first"
    r = train(first, data_root, "--max_iters=2", "--eval_interval=2", "--always_save_checkpoint=True")
    assert r.returncode == 0, r.stderr
    old = (first / "ckpt.pt").read_bytes()
    # tmpfs: room for the old checkpoint, not for a second copy beside it; rlimit: no file that large
    kb = len(old) * 3 // 2 // 1024 if mode == "tmpfs" else len(old) // 2 // 1024
    with small_disk(tmp_path / "disk", kb, mode) as (out, preexec):
        with open(os.path.join(out, "ckpt.pt"), "wb") as f:
            f.write(old)
        r = train(out, data_root, "--init_from=resume", "--max_iters=4", "--eval_interval=2",
                  "--always_save_checkpoint=True", preexec_fn=preexec)
        err = one_line_error(r)
        assert f"no space left on {out}/ckpt.pt (need ~0." in err and "still holds iteration 2" in err, err
        with open(os.path.join(out, "ckpt.pt"), "rb") as f:
            assert f.read() == old
        assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


def test_resume_refuses_shape_flags_that_differ_from_the_checkpoint(tmp_path, data_root):
    out = tmp_path / "out"
    r = train(out, data_root, "--max_iters=2", "--eval_interval=2", "--always_save_checkpoint=True")
    assert r.returncode == 0, r.stderr
    # these used to be ignored: a 32/2 model trained on, its checkpoint's config saying 64/4
    err = one_line_error(train(out, data_root, "--init_from=resume", "--max_iters=4", "--dim=64", "--n_layers=4"))
    assert "--dim=64 but the checkpoint has dim=32; --n_layers=4 but the checkpoint has n_layers=2" in err, err
    assert "resume with --dim=32 --n_layers=2" in err
    assert load_ckpt(out / "ckpt.pt")["iter_num"] == 2
    # the same shape (TINY gives all of it) and another dropout: resumes
    r = train(out, data_root, "--init_from=resume", "--max_iters=4", "--eval_interval=2", "--dropout=0.1",
              "--always_save_checkpoint=True")
    assert r.returncode == 0, r.stderr
    ck = load_ckpt(out / "ckpt.pt")
    assert ck["iter_num"] == 4 and ck["config"]["dim"] == 32 and ck["config"]["dropout"] == 0.1


def test_resume_from_crafted_model_args_is_refused_before_building(tmp_path, data_root):
    from faults import memory_limit
    out = tmp_path / "out"
    r = train(out, data_root, "--max_iters=2", "--eval_interval=2", "--always_save_checkpoint=True")
    assert r.returncode == 0, r.stderr
    ck = load_ckpt(out / "ckpt.pt")
    ck["model_args"]["n_layers"] = 10**9
    torch.save(ck, out / "ckpt.pt")
    r = train(out, data_root, "--init_from=resume", "--max_iters=4", "--n_layers=1000000000",
              preexec_fn=memory_limit(4096), timeout=60)
    err = one_line_error(r)
    assert "n_layers=1000000000 but the weights hold 2 layers" in err, err


def test_metrics_after_kill_and_resume_read_like_an_uninterrupted_run(tmp_path, data_root):
    from faults import kill_when
    common = ["--eval_interval=4", "--always_save_checkpoint=True"]
    a, b = tmp_path / "a", tmp_path / "b"
    r = train(a, data_root, "--max_iters=12", *common)
    assert r.returncode == 0, r.stderr
    # killed after the checkpoint of iteration 8 and the rows of 8, 9, 10 (and maybe more): those
    # rows used to appear twice once the resumed run logged them again
    cmd = [sys.executable, TRAIN, *TINY, f"--data_root={data_root}", f"--out_dir={b}", "--max_iters=12", *common]
    out = kill_when(cmd, "\n10 | loss", env=env())
    assert "saving checkpoint" in out
    with open(b / "metrics.jsonl", "a") as f:
        f.write('{"iter": 11, "lo')  # and a torn line, as a kill in the middle of a write leaves
    r = train(b, data_root, "--max_iters=12", "--init_from=resume", *common)
    assert r.returncode == 0, r.stderr

    def rows(out_dir):  # everything but the timings
        return [{k: v for k, v in json.loads(line).items() if k not in ("dt_ms", "tok_per_s", "eta_s", "mfu")}
                for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows(b) == rows(a)
    assert not list(b.glob("*.tmp"))
