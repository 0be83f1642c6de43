"""Tests for bpe.c, the fast encoder behind tokenizer.fast_encoder and tinystories.py pretokenize:
token for token against sentencepiece (several normalizer settings), the models it must refuse,
the safety net when it disagrees, and a run under ASan/UBSan."""

import os
import subprocess
import sys

import pytest
import sentencepiece as spm

import tinystories
import tokenizer
from conftest import TRICKY, random_texts, small_sp_model as train
from tokenizer import fast_encoder


def sp_ids(sp, texts):
    return [t for s in texts for t in [sp.bos_id()] + sp.encode(s) + [sp.eos_id()]]


def test_fast_encoder_equals_sentencepiece(sp_model, zh_stories, libbpe):
    enc, why = fast_encoder(sp_model)
    assert enc is not None, why
    sp = spm.SentencePieceProcessor(model_file=sp_model)
    texts = TRICKY + zh_stories + random_texts(3000)
    assert enc.encode_docs(texts).tolist() == sp_ids(sp, texts)
    for s in TRICKY:  # one at a time too, and without BOS/EOS
        assert enc.encode_docs([s], bos=False, eos=False).tolist() == sp.encode(s), repr(s)
    assert enc.encode_docs([]).tolist() == []
    spec = tokenizer.read_model_spec(sp_model)  # the hand-read proto agrees with what we trained
    assert (spec["model_type"], spec["normalizer_name"], spec["remove_extra_whitespaces"]) == (2, "identity", 0)
    assert [p["piece"] for p in spec["pieces"]] == [sp.id_to_piece(i) for i in range(sp.vocab_size())]


def test_fast_encoder_other_normalizer_flags(tmp_path, zh_stories, libbpe):
    """The original llama2.c's vocabularies keep remove_extra_whitespaces on; others drop the dummy prefix."""
    mixed = [s + " Tom and  Lily  went to the park. " + str(i) for i, s in enumerate(zh_stories[:600])]
    for name, kw in [("orig", dict(remove_extra_whitespaces=True)),
                     ("noprefix", dict(add_dummy_prefix=False)),
                     ("both", dict(add_dummy_prefix=False, remove_extra_whitespaces=True, vocab_size=700))]:
        model = train(tmp_path, mixed, name, **kw)
        enc, why = fast_encoder(model)
        assert enc is not None, why
        sp = spm.SentencePieceProcessor(model_file=model)
        texts = TRICKY + mixed[:200] + random_texts(2000, seed=1)
        assert enc.encode_docs(texts).tolist() == sp_ids(sp, texts), name


def test_fast_encoder_refuses_what_it_does_not_implement(tmp_path, zh_stories, sp_model, monkeypatch, libbpe):
    texts = zh_stories[:400]
    cases = [("unigram", dict(model_type="unigram"), "not a BPE"),
             ("nfkc", dict(normalization_rule_name="nmt_nfkc"), "normalization"),
             ("userdef", dict(user_defined_symbols=["小狗"]), "user-defined"),
             ("nobytes", dict(byte_fallback=False), "byte")]
    for name, kw, reason in cases:
        enc, why = fast_encoder(train(tmp_path, texts, name, **kw))
        assert enc is None and reason in why, (name, why)
    monkeypatch.setattr(tokenizer, "LIBBPE", str(tmp_path / "missing.so"))
    enc, why = fast_encoder(sp_model)
    assert enc is None and "make bpe" in why


def test_fast_pretokenize_safety_net(tmp_path, zh_stories, sp_model, libbpe, capsys):
    """If bpe.c ever disagreed with sentencepiece, the shard is made by sentencepiece instead: here the
    fast encoder of one vocabulary is checked against a processor of another, so they must disagree."""
    enc, _ = fast_encoder(sp_model)
    other = train(tmp_path, zh_stories[500:900], "other", vocab_size=450)
    good = tinystories.encode_shard_fast(enc, zh_stories[:300], threads=2)
    assert good.tolist() == sp_ids(enc.sp, zh_stories[:300])  # split over two threads: same tokens
    enc.sp = spm.SentencePieceProcessor(model_file=other)
    arr = tinystories.encode_shard_fast(enc, zh_stories[:300], threads=1, name="x.jsonl")
    assert arr.tolist() == sp_ids(enc.sp, zh_stories[:300])
    assert "disagree on story 0 of x.jsonl" in capsys.readouterr().err


SANITIZED_RUN = """
import sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
import sentencepiece as spm
import tokenizer
tokenizer.LIBBPE = sys.argv[2]
from conftest import TRICKY, random_texts
from test_bpe import sp_ids
for model in sys.argv[3:]:
    enc, why = tokenizer.fast_encoder(model)
    sp = spm.SentencePieceProcessor(model_file=model)
    texts = TRICKY + random_texts(3000, seed=7)
    assert enc.encode_docs(texts).tolist() == sp_ids(sp, texts), model
    for t in TRICKY:
        enc.encode_docs([t], bos=False, eos=False)
print("clean")
"""


def test_bpe_c_under_sanitizers(tmp_path, sp_model, zh_stories, repo_root):
    """libbpe.so built with ASan/UBSan, loaded into Python with the runtimes preloaded: no report."""
    cc = os.environ.get("CC", "gcc")
    lib = tmp_path / "libbpe.so"
    try:
        subprocess.run([cc, "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                        "-fno-omit-frame-pointer", "-shared", "-fPIC", "-o", str(lib), str(repo_root / "bpe.c")],
                       check=True, capture_output=True)
        runtimes = [subprocess.run([cc, f"-print-file-name={n}"], capture_output=True, text=True).stdout.strip()
                    for n in ("libasan.so", "libubsan.so")]
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"compiler without sanitizers: {e}")
    if not all(os.path.isabs(r) for r in runtimes):
        pytest.skip("sanitizer runtimes not found")
    other = train(tmp_path, zh_stories[:600] + [" Tom  and Lily "] * 20, "ws", remove_extra_whitespaces=True,
                  add_dummy_prefix=False)
    env = dict(os.environ, LD_PRELOAD=":".join(runtimes), ASAN_OPTIONS="detect_leaks=0")
    r = subprocess.run([sys.executable, "-c", SANITIZED_RUN, str(repo_root), str(lib), sp_model, other],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and "clean" in r.stdout, r.stderr[-3000:]
