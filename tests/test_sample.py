"""Tests for sample.py: a tiny model that has memorized one Chinese story (with a character the
vocabulary spells in byte-fallback tokens) is sampled greedily from ckpt.pt and from a v0 .bin;
the streamed output must be exactly the story, valid UTF-8, stopping at EOS."""

import os
import subprocess
import sys

import pytest
import sentencepiece as spm
import torch

from export import model_export
from model import ModelArgs, Transformer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "sample.py")
STORY = "从前，有一只小狗叫龘龘。龘龘喜欢在花园里玩。"  # 龘 is surely not in a 512-piece vocab


@pytest.fixture(scope="module")
def memorized(sp_model, tmp_path_factory):
    sp = spm.SentencePieceProcessor(model_file=sp_model)
    ids = [sp.bos_id()] + sp.encode(STORY) + [sp.eos_id()]
    assert any(sp.id_to_piece(i).startswith("<0x") for i in ids)  # byte-fallback pieces present
    args = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=4, vocab_size=sp.vocab_size(), multiple_of=32,
                max_seq_len=64, dropout=0.0)
    torch.manual_seed(0)
    model = Transformer(ModelArgs(**args))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x = torch.tensor([ids[:-1]])
    y = torch.tensor([ids[1:]])
    for _ in range(150):
        model(x, y)
        model.last_loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    assert model.last_loss.item() < 0.05
    d = tmp_path_factory.mktemp("sample")
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "model_args": args,
                "iter_num": 150, "best_val_loss": 0.0, "config": {"vocab_source": "custom"}}, d / "ckpt.pt")
    model_export(model, str(d / "model.bin"), version=0)
    return d, sp


def sample(*args):
    r = subprocess.run([sys.executable, SAMPLE, *args], capture_output=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    return r.returncode, r.stdout, r.stderr.decode("utf-8", "replace")


@pytest.mark.parametrize("name", ["ckpt.pt", "model.bin"])
def test_sample_streams_the_memorized_story(memorized, sp_model, name):
    d, sp = memorized
    rc, out, err = sample(f"--checkpoint={d / name}", f"--tokenizer={sp_model}", "--start=从前",
                          "--temperature=0", "--max_new_tokens=60", "--num_samples=2")
    assert rc == 0, err
    text = out.decode("utf-8")  # strict: any broken multi-byte character raises here
    expected = sp.decode(sp.encode(STORY))  # the story as the vocabulary normalizes it
    assert "龘" in expected
    assert text == (expected + "\n---------------\n") * 2  # stopped at EOS, nothing lost


def test_sample_bad_inputs(memorized, sp_model, tmp_path):
    d, _ = memorized
    for args, msg in [
        ([f"--checkpoint={tmp_path / 'missing.bin'}"], "cannot read model file"),
        ([f"--checkpoint={d / 'model.bin'}", f"--tokenizer={sp_model}", "--top_k=x"], "top_k"),
        ([f"--checkpoint={d / 'model.bin'}", f"--tokenizer={sp_model}", f"--start=FILE:{tmp_path / 'no.txt'}"],
         "cannot read prompt (--start) file"),
        # bytes that are no UTF-8 reach Python as lone surrogates, which sentencepiece refused with a traceback
        ([f"--checkpoint={d / 'model.bin'}", f"--tokenizer={sp_model}", b"--start=\xff\xfe"], "not valid UTF-8"),
        ([f"--checkpoint={d / 'model.bin'}", f"--tokenizer={sp_model}", "--device=cpuu"], "device=cpuu"),
    ]:
        rc, out, err = sample(*args)
        assert rc != 0 and err.strip().count("\n") == 0 and msg in err, err


def test_sample_nan_weights_one_line(memorized, sp_model, tmp_path):
    # torch.multinomial's traceback used to end the run
    d, _ = memorized
    ck = torch.load(d / "ckpt.pt", weights_only=True)
    ck["model"]["layers.0.attention.wq.weight"][0, 0] = float("nan")
    torch.save(ck, tmp_path / "nan.pt")
    for t in ("1.0", "0"):
        rc, out, err = sample(f"--checkpoint={tmp_path / 'nan.pt'}", f"--tokenizer={sp_model}", f"--temperature={t}")
        assert rc == 1 and err.strip().count("\n") == 0 and "layers.0.attention.wq.weight" in err, err
