"""Tests for tokenizer.py: encode/decode against sentencepiece itself, the .bin export read back
field by field as FORMATS.md describes it, and run.c's encoder following the normalizer settings
of the .bin trailer. bpe.c's fast encoder has its own tests/test_bpe.py."""

import struct
import subprocess
import sys

import pytest
import sentencepiece as spm

import tokenizer
from conftest import TEXTS, TRICKY, random_texts, small_sp_model as train
from tokenizer import Tokenizer



def test_encode_decode_match_sentencepiece(sp_model, zh_stories):
    sp = spm.SentencePieceProcessor(model_file=sp_model)
    tok = Tokenizer(sp_model)
    assert (tok.n_words, tok.bos_id, tok.eos_id) == (512, 1, 2)
    for text in TEXTS + zh_stories[:50]:
        ids = tok.encode(text, bos=True, eos=True)
        assert ids == [1] + sp.encode(text) + [2]
        assert tok.encode(text, bos=False, eos=False) == sp.encode(text)
        assert tok.decode(ids) == text  # identity normalization: the text comes back unchanged
    # rare characters are spelled with byte-fallback tokens (id = byte + 3)
    ids = tok.encode("龘", bos=False, eos=False)
    assert [sp.id_to_piece(i) for i in ids[1:]] == [f"<0x{b:02X}>" for b in "龘".encode()]
    assert ids[1:] == [b + 3 for b in "龘".encode()]


def read_tok_bin(path, n_words):
    """FORMATS.md's layout, read by hand: (max_token_length, [(score, bytes)], trailer bytes)."""
    data = open(path, "rb").read()
    (max_len,), pos = struct.unpack_from("<I", data, 0), 4
    entries = []
    for _ in range(n_words):
        score, n = struct.unpack_from("<fi", data, pos)
        pos += 8
        entries.append((score, data[pos:pos + n]))
        pos += n
    return max_len, entries, data[pos:]


def test_export_layout(sp_model, sp_tok_bin):
    sp = spm.SentencePieceProcessor(model_file=sp_model)
    max_len, entries, trailer = read_tok_bin(sp_tok_bin, sp.vocab_size())
    # magic, int32 version 1, add_dummy_prefix 1, remove_extra_whitespaces 0, two zero bytes
    assert trailer == b"spnm" + struct.pack("<i", 1) + bytes([1, 0, 0, 0])
    assert max_len == max(len(b) for _, b in entries)
    for i, (score, b) in enumerate(entries):
        assert score == struct.unpack("<f", struct.pack("<f", sp.get_score(i)))[0], i
        if i == 1:
            assert b == b"\n<s>\n"
        elif i == 2:
            assert b == b"\n</s>\n"
        else:
            assert b == sp.id_to_piece(i).replace("\u2581", " ").encode(), i
    assert entries[0][1] == b"<unk>"
    assert entries[3 + 0xE5][1] == b"<0xE5>"  # byte pieces stay literal
    assert any(b.startswith(b" ") for _, b in entries)  # the dummy-prefix piece became a space


def test_cli_writes_bin(sp_model, sp_tok_bin, tmp_path, repo_root):
    model = tmp_path / "tok512.model"
    model.write_bytes(open(sp_model, "rb").read())
    r = subprocess.run([sys.executable, str(repo_root / "tokenizer.py"), f"--tokenizer-model={model}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "tok512.bin").read_bytes() == open(sp_tok_bin, "rb").read()


def test_export_refuses_what_run_c_cannot_mimic(tmp_path, zh_stories):
    """run.c copies BPE with the identity normalizer only: anything else would encode prompts differently."""
    texts = zh_stories[:300]
    for name, kw, reason in [("unigram", dict(model_type="unigram"), "not a BPE"),
                             ("nfkc", dict(normalization_rule_name="nmt_nfkc"), "normalization"),
                             ("userdef", dict(user_defined_symbols=["小狗"]), "user-defined")]:
        with pytest.raises(ValueError, match=reason):
            Tokenizer(train(tmp_path, texts, name, **kw)).export()
        assert not list(tmp_path.glob(f"{name}.bin*"))


def test_cli_bad_input(tmp_path, repo_root):
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a sentencepiece model")
    for arg in [str(tmp_path / "missing.model"), str(bad), str(tmp_path)]:
        r = subprocess.run([sys.executable, str(repo_root / "tokenizer.py"), f"--tokenizer-model={arg}"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0
        assert "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error:"), r.stderr
        if arg == str(tmp_path):
            assert "is a folder" in r.stderr  # not "not found"


# -----------------------------------------------------------------------------
# run.c's encoder with the normalizer settings of the trailer

WHITESPACE = ["  两个空格", "结尾空格  ", " 前后 ", "a  b   c", "   ", " ", "\t制表\t符\t", "换行\n\n两次\n",
              "\u3000全角\u3000空格\u3000", " \u3000 ", "\u2581从前", "从前\u2581", " \u2581 a", "a \u2581  b",
              "\u2581 \u2581", "Tom  and   Lily ", "\n 从前 \n", "  \t  ", "从前，有一只小狗。", ""]


@pytest.fixture(scope="module")
def normalizer_vocabs(tmp_path_factory, zh_stories):
    """Vocabularies trained with each whitespace setting, exported with their trailer."""
    d = tmp_path_factory.mktemp("norm")
    mixed = [s + " Tom and  Lily  went to the park. " + str(i) for i, s in enumerate(zh_stories[:500])]
    out = {}
    for name, kw in [("ours", {}), ("orig", dict(remove_extra_whitespaces=True)),
                     ("noprefix", dict(add_dummy_prefix=False)),
                     ("both", dict(add_dummy_prefix=False, remove_extra_whitespaces=True))]:
        model = train(d, mixed, name, **kw)
        out[name] = (model, Tokenizer(model).export())
    return out


def c_tokenize(run_exe, model_bin, tok_bin, text):
    r = subprocess.run([run_exe, str(model_bin), "-z", str(tok_bin), "-m", "tokenize", "-i", text],
                       capture_output=True, timeout=60, env={"OMP_NUM_THREADS": "1"})
    return r.returncode, [int(t) for t in r.stdout.split()], r.stderr.decode()


@pytest.fixture(scope="module")
def model400(tmp_path_factory):
    from cbuild import binary, export, random_model
    path = export(random_model(400, seed=3, dim=32, n_layers=1, n_heads=2, max_seq_len=64),
                  tmp_path_factory.mktemp("m") / "m400.bin", 0)
    return binary("run"), path


def test_run_c_applies_the_trailer(normalizer_vocabs, model400):
    exe, model_bin = model400
    texts = WHITESPACE + [t for t in TRICKY if "\x00" not in t and len(t) < 500] + random_texts(60, seed=3)
    for name, (model, tok_bin) in normalizer_vocabs.items():
        sp = spm.SentencePieceProcessor(model_file=model)
        flags = tokenizer.read_tokenizer_bin(tok_bin, 400)
        spec = tokenizer.read_model_spec(model)
        assert (flags["add_dummy_prefix"], flags["remove_extra_whitespaces"]) == \
            (spec["add_dummy_prefix"], spec["remove_extra_whitespaces"]), name
        for text in texts:
            rc, ids, err = c_tokenize(exe, model_bin, tok_bin, text)
            assert rc == 0, err
            assert ids == [1] + sp.encode(text), (name, text)


def test_run_c_decodes_the_first_piece_like_sentencepiece(normalizer_vocabs, model400):
    """After BOS sentencepiece drops a leading space only when its normalizer may have added one."""
    exe, model_bin = model400
    for name, (model, tok_bin) in normalizer_vocabs.items():
        sp = spm.SentencePieceProcessor(model_file=model)
        for prompt in ["从前，有一只小狗", " Tom and Lily", "a  b"]:
            ids = [1] + sp.encode(prompt)
            r = subprocess.run([exe, str(model_bin), "-z", str(tok_bin), "-t", "0", "-n", str(len(ids) - 1),
                                "-i", prompt], capture_output=True, timeout=60, env={"OMP_NUM_THREADS": "1"})
            assert r.returncode == 0, r.stderr
            assert r.stdout.decode() == sp.decode(ids) + "\n", (name, prompt)


def test_run_c_without_trailer_and_with_garbage(normalizer_vocabs, model400, tmp_path):
    """A .bin without trailer (the published tok5000.bin) keeps spaces and adds the dummy prefix, as
    before; bytes after the pieces that are not exactly the trailer are refused in one line."""
    exe, model_bin = model400
    model, tok_bin = normalizer_vocabs["ours"]  # dummy prefix, spaces kept: the same without trailer
    sp = spm.SentencePieceProcessor(model_file=model)
    plain = tmp_path / "plain.bin"
    plain.write_bytes(open(tok_bin, "rb").read()[:-12])
    assert tokenizer.read_tokenizer_bin(plain, 400)["trailer"] is False
    for text in WHITESPACE:
        rc, ids, err = c_tokenize(exe, model_bin, plain, text)
        assert rc == 0 and ids == [1] + sp.encode(text), (text, err)
    model, tok_bin = normalizer_vocabs["orig"]  # without its trailer the extra spaces stay
    sp = spm.SentencePieceProcessor(model_file=model)
    data = open(tok_bin, "rb").read()
    body, trailer = data[:-12], data[-12:]
    plain.write_bytes(body)
    for text in ["  两个空格", "结尾空格  ", "a  b"]:
        rc, ids, err = c_tokenize(exe, model_bin, plain, text)
        assert rc == 0 and ids != [1] + sp.encode(text), text
    bad = {"extra": data + b"\0", "magic": body + b"SPNM" + trailer[4:], "version": body + trailer[:4] +
           struct.pack("<i", 2) + trailer[8:], "flag": body + trailer[:8] + b"\2" + trailer[9:],
           "short": body + trailer[:11], "pad": body + trailer[:11] + b"\1"}
    for name, blob in bad.items():
        p = tmp_path / f"{name}.bin"
        p.write_bytes(blob)
        rc, ids, err = c_tokenize(exe, model_bin, p, "从前")
        assert rc != 0 and "after the model's 400 pieces" in err and len(err.strip().splitlines()) == 1, (name, err)
        with pytest.raises(ValueError, match="after the model's 400 pieces"):
            tokenizer.read_tokenizer_bin(p, 400)


def test_template_trailer_v2(sp_model, sp_tok_bin, tmp_path, repo_root):
    """An instruction-tuned model's prompt template rides in a version-2 trailer; without one the file
    stays byte for byte what it was (test_export_layout), so older readers keep reading it."""
    from tokenizer import read_tokenizer_bin
    template = "[INST] {instruction} [/INST]"
    out = tmp_path / "t.bin"
    r = subprocess.run([sys.executable, str(repo_root / "tokenizer.py"), "-t", sp_model, "--instruct", "-o", str(out)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    n = spm.SentencePieceProcessor(model_file=sp_model).vocab_size()
    old, new = open(sp_tok_bin, "rb").read(), out.read_bytes()
    raw = template.encode()
    assert new == old[:-12] + b"spnm" + struct.pack("<i", 2) + bytes([1, 0, 0, 0]) + struct.pack("<I", len(raw)) + raw
    assert read_tokenizer_bin(str(out), n)["template"] == template
    assert read_tokenizer_bin(sp_tok_bin, n)["template"] is None
    # a broken trailer is refused in one line, as any other bytes after the pieces
    head = new[:len(old) - 12]
    for bad in [new[:-1], new + b"x", head + b"spnm" + struct.pack("<i", 2) + bytes(4),
                head + b"spnm" + struct.pack("<i", 2) + bytes([1, 0, 0, 0]) + struct.pack("<I", 3) + b"abc",
                head + b"spnm" + struct.pack("<i", 3) + new[len(old) - 4:]]:
        (tmp_path / "bad.bin").write_bytes(bad)
        with pytest.raises(ValueError, match="bytes after"):
            read_tokenizer_bin(str(tmp_path / "bad.bin"), n)
    r = subprocess.run([sys.executable, str(repo_root / "tokenizer.py"), "-t", sp_model, "--template", "no slot",
                        "-o", str(tmp_path / "x.bin")], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "{instruction}" in r.stderr and "Traceback" not in r.stderr
