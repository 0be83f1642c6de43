"""Tests for tokenizer.py: encode/decode against sentencepiece itself, and the .bin export read back
field by field as FORMATS.md describes it."""

import struct
import subprocess
import sys

import sentencepiece as spm

from tokenizer import Tokenizer

TEXTS = ["从前，有一个小女孩叫莉莉。", "莉莉说：“你好！” Hello  world 123 4567", "😀 龘 𠀀 é",
         "  两个空格  和结尾空格 ", "a\nb\tc", ""]


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
    data = open(path, "rb").read()
    (max_len,), pos = struct.unpack_from("<I", data, 0), 4
    entries = []
    for _ in range(n_words):
        score, n = struct.unpack_from("<fi", data, pos)
        pos += 8
        entries.append((score, data[pos:pos + n]))
        pos += n
    assert pos == len(data), "trailing bytes after the last token"
    return max_len, entries


def test_export_layout(sp_model, sp_tok_bin):
    sp = spm.SentencePieceProcessor(model_file=sp_model)
    max_len, entries = read_tok_bin(sp_tok_bin, sp.vocab_size())
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


def test_cli_bad_input(tmp_path, repo_root):
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a sentencepiece model")
    for arg in [str(tmp_path / "missing.model"), str(bad)]:
        r = subprocess.run([sys.executable, str(repo_root / "tokenizer.py"), f"--tokenizer-model={arg}"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0
        assert "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error:"), r.stderr
