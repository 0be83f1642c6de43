"""Tests for export.py: byte layouts of v0/v1/v2, round trips through load_model_bin, the
Hugging Face layout, bad files, and the CLI."""

import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

from export import load_checkpoint, load_model_bin, model_export, quantize_q80, read_bin_header
from cbuild import random_model
from model import shares_classifier

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=97, multiple_of=32, max_seq_len=40)


def make_model(shared=True, seed=0, vocab_size=ARGS["vocab_size"]):
    """A random model of ARGS; unshared, the classifier differs from the embedding, so a swapped tensor would show."""
    return random_model(vocab_size, seed, n_kv_heads=ARGS["n_kv_heads"], shared=shared, max_seq_len=ARGS["max_seq_len"])


def ints(b, off, n):
    return list(struct.unpack_from(f"<{n}i", b, off))


def floats(b, off, n):
    return np.frombuffer(b, dtype="<f4", count=n, offset=off)


def test_v0_layout_field_by_field(tmp_path):
    m = make_model()
    p = tmp_path / "m.bin"
    model_export(m, str(p), version=0)
    b = p.read_bytes()
    hidden = m.layers[0].feed_forward.w1.weight.shape[0]
    assert hidden == 192
    assert ints(b, 0, 7) == [64, 192, 2, 4, 2, 97, 40]
    off = 28
    V, D, L, hs = 97, 64, 2, 16
    np.testing.assert_array_equal(floats(b, off, V * D), m.tok_embeddings.weight.detach().numpy().ravel())
    off += 4 * V * D
    np.testing.assert_array_equal(floats(b, off, D), m.layers[0].attention_norm.weight.detach().numpy())
    off += 4 * L * D
    np.testing.assert_array_equal(floats(b, off, D * D), m.layers[0].attention.wq.weight.detach().numpy().ravel())
    np.testing.assert_array_equal(floats(b, off + 4 * D * D, D * D), m.layers[1].attention.wq.weight.detach().numpy().ravel())
    # the file ends with the final norm and the two RoPE tables (seq_len x head_size/2 each)
    tail = 4 * (D + 2 * 40 * hs // 2)
    np.testing.assert_array_equal(floats(b, len(b) - tail, D), m.norm.weight.detach().numpy())
    np.testing.assert_allclose(floats(b, len(b) - 4 * 40 * hs, 40 * hs // 2), m.freqs_cos.numpy().ravel())
    assert len(b) == read_bin_header(str(p))["expected_size"]


def test_v1_v2_headers_field_by_field(tmp_path):
    m = make_model(shared=False)
    for version in (1, 2):
        p = tmp_path / f"m{version}.bin"
        model_export(m, str(p), version=version)
        b = p.read_bytes()
        assert struct.unpack_from("<I", b, 0)[0] == 0x616B3432 and b[:4] == b"24ka"
        assert ints(b, 4, 1) == [version]
        assert ints(b, 8, 7) == [64, 192, 2, 4, 2, 97, 40]  # vocab_size stays positive
        assert b[36] == 0  # not shared
        if version == 2:
            assert ints(b, 37, 1) == [64]  # group size: 64 divides dim 64
            assert b[41:256] == bytes(215)
        else:
            assert b[37:256] == bytes(219)
        # the first tensor after the header is layer 0's attention norm, in both versions
        np.testing.assert_array_equal(floats(b, 256, 64), m.layers[0].attention_norm.weight.detach().numpy())


@pytest.mark.parametrize("shared", [True, False])
def test_round_trip_v0_v1_v2(tmp_path, shared):
    m = make_model(shared=shared)
    x = torch.randint(0, 97, (2, 20))
    ref = m(x, x)
    for version in (0, 1, 2):
        p = tmp_path / f"m{version}.bin"
        model_export(m, str(p), version=version)
        m2 = load_model_bin(str(p))
        assert shares_classifier(m2) == shared
        assert m2.params.vocab_size == 97 and m2.params.max_seq_len == 40
        sd, sd2 = m.state_dict(), m2.state_dict()
        for k in sd:
            if version < 2 or sd[k].dim() == 1:
                assert torch.equal(sd[k], sd2[k]), (version, k)
            else:
                # Q8_0: every value within half a quantization step of its group's scale
                w = sd[k].reshape(-1, 64)
                step = w.abs().max(dim=1, keepdim=True).values / 127
                assert ((sd2[k].reshape(-1, 64) - w).abs() <= step / 2 + 1e-7).all(), k
        out = m2(x, x)
        if version < 2:
            assert torch.equal(out, ref)
        else:
                assert (out - ref).abs().max() < 0.03 * ref.abs().max()  # Q8_0 weights: close, not equal
    if not shared:
        b = (tmp_path / "m0.bin").read_bytes()
        assert ints(b, 0, 7)[5] == -97  # v0 marks an unshared classifier with a negative vocab_size
        np.testing.assert_array_equal(floats(b, len(b) - 4 * 97 * 64, 97 * 64),
                                      m.output.weight.detach().numpy().ravel())


def test_export_does_not_mutate_model(tmp_path):
    m = make_model(shared=False)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    model_export(m, str(tmp_path / "a.bin"), version=0)
    model_export(m, str(tmp_path / "b.bin"), version=0)  # the original flipped vocab_size twice here
    model_export(m, str(tmp_path / "q.bin"), version=2)
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()
    assert m.params.vocab_size == 97 and not shares_classifier(m)
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k])


def test_quantize_q80_zero_group():
    w = torch.cat([torch.zeros(64), torch.linspace(-1, 1, 64)])
    q, s, err = quantize_q80(w, 64)
    assert s[0] == 0 and (q[0] == 0).all()  # no NaN from 0/0
    assert q[1].abs().max() == 127 and err <= s[1] / 2 + 1e-7


def test_hf_export_matches_rotate_half_attention(tmp_path):
    """HF's Llama applies RoPE with rotate_half (first half/second half of each head); its q/k
    weights must be permuted so it computes the same rotated queries as our interleaved pairs."""
    m = make_model()
    model_export(m, str(tmp_path / "hf"), version=-1, dtype=torch.float32)
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert cfg["hidden_size"] == 64 and cfg["intermediate_size"] == 192
    assert cfg["num_key_value_heads"] == 2 and cfg["tie_word_embeddings"] is True
    sd = torch.load(tmp_path / "hf" / "pytorch_model.bin", weights_only=True)
    assert len(sd) == 2 + 9 * 2 + 1
    x = torch.randn(1, 7, 64)
    T, hs = 7, 16
    from model import apply_rotary_emb
    cos, sin = m.freqs_cos[:T], m.freqs_sin[:T]
    for name, heads in (("q", 4), ("k", 2)):
        w = getattr(m.layers[1].attention, "w" + name).weight
        ours = (x @ w.T).view(1, T, heads, hs)
        ours, _ = apply_rotary_emb(ours, ours, cos, sin)
        hf = (x @ sd[f"model.layers.1.self_attn.{name}_proj.weight"].T).view(1, T, heads, hs)
        c = torch.cat([cos, cos], -1).view(1, T, 1, hs)
        s = torch.cat([sin, sin], -1).view(1, T, 1, hs)
        rot = torch.cat([-hf[..., hs // 2:], hf[..., :hs // 2]], -1)
        hf = hf * c + rot * s
        # same values, features reordered within each head: (pairs interleaved) vs (halves)
        ours = ours.view(1, T, heads, hs // 2, 2).transpose(-1, -2).reshape(1, T, heads, hs)
        torch.testing.assert_close(hf, ours)
    model_export(m, str(tmp_path / "hf16"), version=-1, dtype=torch.float16)
    sd16 = torch.load(tmp_path / "hf16" / "pytorch_model.bin", weights_only=True)
    assert sd16["lm_head.weight"].dtype == torch.float16


def test_bad_files_raise_clear_value_errors(tmp_path):
    m = make_model()
    good = tmp_path / "good.bin"
    model_export(m, str(good), version=1)
    b = good.read_bytes()
    cases = {
        "trunc.bin": (b[:-4], "does not match its header"),
        "long.bin": (b + b"\0", "does not match its header"),
        "tiny.bin": (b[:10], "too short"),
        "ver.bin": (b[:4] + struct.pack("<i", 7) + b[8:], "unsupported model file version 7"),
        "zero.bin": (bytes(1000), "not a llama2.c model file"),
        "heads.bin": (b[:8] + struct.pack("<7i", 64, 192, 2, 5, 5, 97, 40) + b[36:], "n_heads"),
    }
    for name, (data, msg) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=msg):
            load_model_bin(str(tmp_path / name))
    with pytest.raises(ValueError, match="cannot read"):
        load_model_bin(str(tmp_path / "missing.bin"))


def test_cli_from_checkpoint_and_errors(tmp_path):
    m = make_model(shared=False)
    ckpt = {"model": m.state_dict(), "model_args": ARGS, "iter_num": 1, "best_val_loss": 1.0,
            "config": {}, "optimizer": {}}
    torch.save(ckpt, tmp_path / "ckpt.pt")
    m2 = load_checkpoint(str(tmp_path / "ckpt.pt"))
    assert not shares_classifier(m2) and torch.equal(m2.output.weight, m.output.weight)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), str(tmp_path / "out.bin"),
                        "--version", "2", "--checkpoint", str(tmp_path / "ckpt.pt")],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert read_bin_header(str(tmp_path / "out.bin"))["version"] == 2
    (tmp_path / "bad.pt").write_bytes(b"PK\x03\x04 not really a zip")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), str(tmp_path / "o.bin"),
                        "--checkpoint", str(tmp_path / "bad.pt")], capture_output=True, text=True)
    assert r.returncode != 0
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error: cannot load checkpoint")
    assert not (tmp_path / "o.bin").exists()


def test_bad_checkpoints_raise_clear_value_errors(tmp_path):
    m = make_model()
    sd = m.state_dict()
    cases = {
        # a checkpoint missing weights used to load with strict=False: a silently random model
        "partial.pt": ({"model_args": ARGS, "model": {k: sd[k] for k in ("tok_embeddings.weight", "output.weight")}},
                       "do not fit its model_args.*n_layers=2 but the weights hold 0 layers"),
        "no_norm.pt": ({"model_args": ARGS, "model": {k: v for k, v in sd.items() if k != "norm.weight"}},
                       "do not fit its model_args.*Missing key norm.weight"),
        "other_dims.pt": ({"model_args": {**ARGS, "dim": 32}, "model": sd}, "do not fit its model_args.*size mismatch"),
        "no_weights.pt": ({"model_args": ARGS, "model": {}}, "no 'output.weight' entry"),
        "dim0.pt": ({"model_args": {**ARGS, "dim": 0}, "model": sd}, "model_args dim = 0"),
    }
    for name, (obj, msg) in cases.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(ValueError, match=msg):
            load_checkpoint(str(tmp_path / name))
    model_export(m, str(tmp_path / "model.bin"))  # a .bin given as a checkpoint: no advice to unpickle it
    with pytest.raises(ValueError, match="not a train.py checkpoint") as e:
        load_checkpoint(str(tmp_path / "model.bin"))
    assert "weights_only=False" not in str(e.value)


def test_cli_never_leaves_a_torn_output(tmp_path, capsys):
    import export
    out = tmp_path / "model.bin"
    out.write_bytes(b"the previous export")  # (fileio.write_atomic's own tests: test_fileio.py)
    # a folder as the output of a file version: one line, the folder untouched
    torch.save({"model_args": ARGS, "model": make_model().state_dict()}, tmp_path / "ckpt.pt")
    with pytest.raises(SystemExit):
        export.main([str(tmp_path), "--checkpoint", str(tmp_path / "ckpt.pt")])
    err = capsys.readouterr().err
    assert err.startswith("error:") and "is a folder" in err and err.count("\n") == 1
    assert sorted(os.listdir(tmp_path)) == ["ckpt.pt", "model.bin"]
    with pytest.raises(SystemExit) as e:  # a bad flag: one line too, not argparse's usage text
        export.main([str(out), "--version", "3", "--checkpoint", str(tmp_path / "ckpt.pt")])
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.startswith("error: argument --version") and err.count("\n") == 1
    export.main([str(out), "--version", "2", "--checkpoint", str(tmp_path / "ckpt.pt")])
    assert read_bin_header(str(out))["version"] == 2 and sorted(os.listdir(tmp_path)) == ["ckpt.pt", "model.bin"]


# -----------------------------------------------------------------------------
# GGUF, read back with the gguf package's own reader

GGUF_NAMES = {"attention_norm": "attn_norm", "attention.wq": "attn_q", "attention.wk": "attn_k",
              "attention.wv": "attn_v", "attention.wo": "attn_output", "ffn_norm": "ffn_norm",
              "feed_forward.w1": "ffn_gate", "feed_forward.w2": "ffn_down", "feed_forward.w3": "ffn_up"}


def gguf_model(shared, seed=0):
    return make_model(shared, seed, vocab_size=512)  # the conftest vocabulary's size


def expected_tensors(m):
    want = {"token_embd.weight": m.tok_embeddings.weight, "output_norm.weight": m.norm.weight}
    for i, layer in enumerate(m.layers):
        for ours, theirs in GGUF_NAMES.items():
            mod = layer
            for part in ours.split("."):
                mod = getattr(mod, part)
            want[f"blk.{i}.{theirs}.weight"] = mod.weight
    if not shares_classifier(m):
        want["output.weight"] = m.output.weight
    return {k: v.detach().numpy() for k, v in want.items()}


def read_gguf(path):
    import gguf
    from gguf_fields import field_value
    r = gguf.GGUFReader(str(path))
    meta = {k: field_value(f) for k, f in r.fields.items()}
    return meta, {t.name: t for t in r.tensors}


def dequant(t):
    import gguf
    return gguf.quants.dequantize(t.data, t.tensor_type).reshape(tuple(reversed([int(d) for d in t.shape])))


@pytest.mark.parametrize("shared", [True, False])
def test_gguf_f32_metadata_vocabulary_and_tensors(tmp_path, sp_model, sp_tok_bin, shared):
    import gguf
    import sentencepiece as spm
    m = gguf_model(shared)
    sp = spm.SentencePieceProcessor(model_file=sp_model)
    metas = []
    for tok in (sp_model, sp_tok_bin):  # the .model and run.c's .bin give the same vocabulary
        out = tmp_path / f"m-{os.path.basename(tok)}.gguf"
        model_export(m, str(out), "gguf", tokenizer=tok, gguf_type="f32")
        meta, tensors = read_gguf(out)
        want = expected_tensors(m)
        assert sorted(tensors) == sorted(want)
        for name, t in tensors.items():
            assert t.tensor_type == gguf.GGMLQuantizationType.F32, name
            assert [int(d) for d in t.shape] == list(reversed(want[name].shape)), name  # ggml: fastest dim first
            np.testing.assert_array_equal(dequant(t), want[name], err_msg=name)  # bit-exact
        metas.append(meta)
    meta = metas[0]
    assert {k: v for k, v in metas[1].items() if k.startswith(("llama.", "tokenizer."))} == \
        {k: v for k, v in meta.items() if k.startswith(("llama.", "tokenizer."))}
    assert meta["general.architecture"] == "llama" and meta["general.file_type"] == 0
    assert (meta["llama.context_length"], meta["llama.embedding_length"], meta["llama.block_count"],
            meta["llama.feed_forward_length"], meta["llama.attention.head_count"],
            meta["llama.attention.head_count_kv"], meta["llama.rope.dimension_count"]) == (40, 64, 2, 192, 4, 2, 16)
    assert meta["llama.rope.freq_base"] == 10000.0
    assert meta["llama.attention.layer_norm_rms_epsilon"] == np.float32(1e-5)
    assert meta["tokenizer.ggml.model"] == "llama"
    assert meta["tokenizer.ggml.tokens"] == [sp.id_to_piece(i) for i in range(512)]
    assert meta["tokenizer.ggml.scores"] == [np.float32(sp.get_score(i)) for i in range(512)]
    T = gguf.TokenType
    types = [T.UNKNOWN if sp.is_unknown(i) else T.CONTROL if sp.is_control(i) else T.BYTE if sp.is_byte(i)
             else T.NORMAL for i in range(512)]
    assert meta["tokenizer.ggml.token_type"] == [int(t) for t in types]
    assert types[:3] == [T.UNKNOWN, T.CONTROL, T.CONTROL] and types[3 + 0xE5] == T.BYTE
    assert (meta["tokenizer.ggml.unknown_token_id"], meta["tokenizer.ggml.bos_token_id"],
            meta["tokenizer.ggml.eos_token_id"]) == (0, 1, 2)
    assert meta["tokenizer.ggml.add_bos_token"] is True and meta["tokenizer.ggml.add_eos_token"] is False
    assert meta["tokenizer.ggml.add_space_prefix"] is True
    assert meta["tokenizer.ggml.remove_extra_whitespaces"] is False


def test_gguf_f16_q8_0_close(tmp_path, sp_tok_bin):
    import gguf
    m = gguf_model(shared=False)
    want = expected_tensors(m)
    for kind, qtype, ftype in [("f16", gguf.GGMLQuantizationType.F16, 1), ("q8_0", gguf.GGMLQuantizationType.Q8_0, 7)]:
        out = tmp_path / f"{kind}.gguf"
        model_export(m, str(out), "gguf", tokenizer=sp_tok_bin, gguf_type=kind)
        meta, tensors = read_gguf(out)
        assert meta["general.file_type"] == ftype and sorted(tensors) == sorted(want)
        for name, t in tensors.items():
            w = want[name]
            got = dequant(t)
            assert got.shape == w.shape, name
            if w.ndim == 1:  # norms stay F32, exact
                assert t.tensor_type == gguf.GGMLQuantizationType.F32
                np.testing.assert_array_equal(got, w)
                continue
            assert t.tensor_type == qtype, name
            blocks = np.abs(w).reshape(-1, 32).max(axis=1, keepdims=True)
            # F16: half an ulp (2^-11 relative; 2^-25 absolute among the subnormals); Q8_0: half a step of
            # its per-block scale max|w|/127, plus up to 127 times the f16 rounding of that scale
            tol = np.abs(w).reshape(-1, 32) * 2 ** -11 + 2 ** -25 if kind == "f16" else \
                blocks / 127 * (0.5 + 127 * 2 ** -11) + 1e-9
            assert np.all(np.abs(got - w).reshape(-1, 32) <= tol), name
            assert not np.array_equal(got, w), name  # really converted


def test_gguf_cli_from_bin_versions_and_checkpoint(tmp_path, sp_model, sp_tok_bin):
    m = gguf_model(shared=False)
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"model": m.state_dict(), "model_args": {**ARGS, "vocab_size": 512}}, ckpt)
    exe = [sys.executable, os.path.join(ROOT, "export.py")]
    for v in (0, 1, 2):
        model_export(m, str(tmp_path / f"v{v}.bin"), version=v)
    ref = expected_tensors(m)
    for src, extra in [("ckpt", ["--checkpoint", str(ckpt), "--tokenizer", sp_model]),
                       ("v0", ["--bin", str(tmp_path / "v0.bin"), "--tokenizer", str(sp_tok_bin)]),
                       ("v1", ["--bin", str(tmp_path / "v1.bin"), "--tokenizer", str(sp_tok_bin)]),
                       ("v2", ["--bin", str(tmp_path / "v2.bin"), "--tokenizer", str(sp_tok_bin)])]:
        out = tmp_path / f"{src}.gguf"
        r = subprocess.run(exe + [str(out), "--version", "gguf", *extra], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        _, tensors = read_gguf(out)
        want = expected_tensors(load_model_bin(str(tmp_path / "v2.bin"))) if src == "v2" else ref
        for name, t in tensors.items():
            np.testing.assert_array_equal(dequant(t), want[name], err_msg=f"{src} {name}")
    # one-line errors, nothing written: no tokenizer, one of another size, a broken one
    short = tmp_path / "short.bin"
    short.write_bytes(open(sp_tok_bin, "rb").read()[:-100])
    for extra, msg in [([], "needs --tokenizer"), (["--tokenizer", str(short)], "ends after"),
                       (["--tokenizer", str(tmp_path / "none.bin")], "cannot read tokenizer"),
                       (["--tokenizer", str(sp_tok_bin), "--gguf_type", "q4_0"], "--gguf_type")]:
        r = subprocess.run(exe + [str(tmp_path / "bad.gguf"), "--version", "gguf", "--checkpoint", str(ckpt), *extra],
                           capture_output=True, text=True)
        assert r.returncode != 0 and r.stderr.startswith("error:") and msg in r.stderr, r.stderr
        assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
        assert not [n for n in os.listdir(tmp_path) if n.startswith("bad.gguf")]


def export_cli(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), *map(str, args)], capture_output=True,
                          text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_cli_refuses_non_finite_weights_and_special_outputs(tmp_path):
    # an all-NaN checkpoint used to export without a word, and run then printed <unk> forever
    m = make_model()
    with torch.no_grad():
        m.layers[1].feed_forward.w2.weight[3, 5] = float("inf")
    torch.save({"model_args": ARGS, "model": m.state_dict()}, tmp_path / "inf.pt")
    r = export_cli(tmp_path / "o.bin", "--checkpoint", tmp_path / "inf.pt")
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "layers.1.feed_forward.w2.weight has 1 NaN or inf" in r.stderr and not (tmp_path / "o.bin").exists()
    # the writer renamed a regular file over a FIFO (and, as root, over /dev/full)
    torch.save({"model_args": ARGS, "model": make_model().state_dict()}, tmp_path / "ok.pt")
    os.mkfifo(tmp_path / "fifo")
    for target in (tmp_path / "fifo", "/dev/full"):
        r = export_cli(target, "--checkpoint", tmp_path / "ok.pt")
        assert r.returncode == 1 and "not a regular file" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert stat_kind(tmp_path / "fifo") == "fifo" and stat_kind("/dev/full") == "chr"


def stat_kind(path):
    import stat
    mode = os.lstat(path).st_mode
    return "fifo" if stat.S_ISFIFO(mode) else "chr" if stat.S_ISCHR(mode) else "other"


def test_plain_pickle_checkpoint_is_one_line(tmp_path):
    # torch's two-line UserWarning about the pickle protocol came before our error
    import pickle
    with open(tmp_path / "old.pt", "wb") as f:
        pickle.dump({"model_args": ARGS, "model": {}}, f, protocol=4)
    r = export_cli(tmp_path / "o.bin", "--checkpoint", tmp_path / "old.pt")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and r.stderr.startswith("error: cannot load"), r.stderr


def test_chat_template_in_gguf_and_hf(tmp_path, sp_model, sp_tok_bin):
    """An instruction-tuned model carries its prompt template to llama.cpp / Ollama (GGUF
    tokenizer.chat_template) and transformers (tokenizer_config.json); rendered, it is the prompt
    sample.py and ./run give the model."""
    import jinja2
    from instruct import TEMPLATE, render
    from tokenizer import Tokenizer
    m = gguf_model(shared=True)
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"model": m.state_dict(), "model_args": {**ARGS, "vocab_size": 512},
                "config": {"task": "sft", "template": TEMPLATE}}, ckpt)
    model_export(m, str(tmp_path / "v0.bin"), version=0)
    tok2 = Tokenizer(sp_model).export(str(tmp_path / "tok_instruct.bin"), TEMPLATE)
    exe = [sys.executable, os.path.join(ROOT, "export.py")]
    msgs = [{"role": "user", "content": "讲一个关于小狗的故事。"}]
    want = "<s>" + render("讲一个关于小狗的故事。")
    for name, extra in [("ckpt", ["--checkpoint", str(ckpt), "--tokenizer", sp_model]),
                        ("bin", ["--bin", str(tmp_path / "v0.bin"), "--tokenizer", tok2]),
                        ("plain", ["--bin", str(tmp_path / "v0.bin"), "--tokenizer", str(sp_tok_bin)])]:
        out = tmp_path / f"{name}.gguf"
        r = subprocess.run(exe + [str(out), "--version", "gguf", *extra], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        meta, _ = read_gguf(out)
        if name == "plain":  # a model without a template gets none
            assert "tokenizer.chat_template" not in meta
            continue
        t = jinja2.Environment().from_string(meta["tokenizer.chat_template"])
        assert t.render(bos_token="<s>", eos_token="</s>", messages=msgs) == want
    r = subprocess.run(exe + [str(tmp_path / "hf"), "--version", "-1", "--checkpoint", str(ckpt)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cfg = json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert jinja2.Environment().from_string(cfg["chat_template"]).render(
        bos_token=cfg["bos_token"], eos_token=cfg["eos_token"], messages=msgs) == want


@pytest.mark.parametrize("mode", ["rlimit", "tmpfs"])
def test_full_disk_is_one_line(tmp_path, sp_model, mode):
    from faults import small_disk
    # Hugging Face: torch.save's RuntimeError used to come out as two tracebacks; GGUF: numpy's
    # "N requested and M written"
    torch.save({"model_args": {**ARGS, "vocab_size": 512}, "model": gguf_model(shared=False).state_dict()},
               tmp_path / "ckpt.pt")
    with small_disk(tmp_path / "disk", 96, mode) as (folder, preexec):
        for out, extra in [(f"{folder}/hf", ["--version", "-1"]),
                           (f"{folder}/m.gguf", ["--version", "gguf", "--tokenizer", sp_model]),
                           (f"{folder}/m.bin", ["--version", "0"])]:
            r = subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), out, "--checkpoint",
                                str(tmp_path / "ckpt.pt"), *extra], capture_output=True, text=True, preexec_fn=preexec)
            name = out + "/pytorch_model.bin" if out.endswith("hf") else out
            assert r.returncode == 1 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
            assert r.stderr.startswith(f"error: no space left on {name} (need ~0."), r.stderr
            assert not os.path.exists(name)
        assert os.listdir(folder) in (["hf"], [])
        assert not os.listdir(f"{folder}/hf")


def test_crafted_model_args_are_refused_before_anything_is_built(tmp_path):
    from faults import memory_limit
    # n_layers=10**9 used to build the model first: RSS grew without end
    sd = make_model().state_dict()
    for name, args, msg in [("layers.pt", {**ARGS, "n_layers": 10**9}, "n_layers=1000000000 but the weights hold 2 layers"),
                            ("vocab.pt", {**ARGS, "vocab_size": 10**9}, "size mismatch for tok_embeddings.weight"),
                            ("seq.pt", {**ARGS, "max_seq_len": 10**9}, "max_seq_len=1000000000 is beyond the limit")]:
        torch.save({"model_args": args, "model": sd}, tmp_path / name)
        r = subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), str(tmp_path / "o.bin"), "--checkpoint",
                            str(tmp_path / name)], capture_output=True, text=True, preexec_fn=memory_limit(4096), timeout=60)
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and msg in r.stderr, r.stderr
    # a v1 header's seq_len is not backed by the file's size (the RoPE tables are not stored)
    model_export(make_model(), str(tmp_path / "v1.bin"), version=1)
    b = bytearray((tmp_path / "v1.bin").read_bytes())
    struct.pack_into("<i", b, 8 + 4 * 6, 2**31 - 1)
    (tmp_path / "v1.bin").write_bytes(bytes(b))
    with pytest.raises(ValueError, match="header seq_len 2147483647 is beyond the limit"):
        load_model_bin(str(tmp_path / "v1.bin"))
