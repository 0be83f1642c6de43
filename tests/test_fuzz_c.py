"""Fuzzing the C runners: mutated and truncated model and tokenizer files, and hostile prompts,
against run and runq built with -fsanitize=address,undefined. Every case must end cleanly:
exit 0 with valid UTF-8 and no control characters on stdout, or exit 1 with one line on stderr;
never a signal, never a sanitizer report.
Run: .venv/bin/python -m pytest -q tests/test_fuzz_c.py"""

import os
import random
import struct
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from cbuild import build, export, random_model

VOCAB = 512
SAN_ENV = {"ASAN_OPTIONS": "allocator_may_return_null=1:detect_leaks=0:abort_on_error=0",
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def san(tmp_path_factory):
    d = tmp_path_factory.mktemp("san")
    flags = ["-O1", "-g", "-march=native", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
             "-fno-omit-frame-pointer"]
    try:
        with ThreadPoolExecutor(2) as ex:
            bins = dict(zip(("run", "runq"), ex.map(lambda n: build(d, f"{n}.c", n, flags), ("run", "runq"))))
    except subprocess.CalledProcessError as e:
        pytest.skip(f"compiler without sanitizers: {e.stderr.decode()[:200]}")
    r = subprocess.run([bins["run"], "-h"], capture_output=True, env=dict(os.environ, **SAN_ENV))
    if r.returncode != 0:  # e.g. ASan cannot map its shadow memory in this sandbox
        pytest.skip(f"sanitizer runtime does not start here: {r.stderr.decode()[:200]}")
    return bins


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzzmodels")
    m = random_model(VOCAB, seed=0, dim=32, n_layers=1, n_heads=4, n_kv_heads=2, shared=False, max_seq_len=24)
    return {v: export(m, d / f"m{v}.bin", v).read_bytes() for v in (0, 1, 2)}


def check(exe, model_bytes, tok_bytes, args, name, tmp_path):
    mp, tp = tmp_path / f"{name}.bin", tmp_path / f"{name}.tok"
    mp.write_bytes(model_bytes)
    tp.write_bytes(tok_bytes)
    env = dict(os.environ, **SAN_ENV)
    r = subprocess.run([exe, str(mp), "-z", str(tp), *args], capture_output=True, timeout=120, env=env)
    err = r.stderr.decode("utf-8", "replace")
    desc = f"{name}: rc={r.returncode} stderr={err[:800]!r}"
    assert "Sanitizer" not in err and "runtime error" not in err, desc
    assert r.returncode in (0, 1), desc
    if r.returncode == 1:
        assert err.startswith("error: ") and err.count("\n") == 1, desc
    else:
        text = r.stdout.decode("utf-8")  # raises on invalid UTF-8
        assert not any((ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F for c in text), desc
    mp.unlink()
    tp.unlink()
    return r.returncode


def mutate_header(data, rng, header_len):
    b = bytearray(data)
    kind = rng.randrange(4)
    if kind == 0:  # an int field set to a special value
        off = rng.randrange(0, header_len - 3, 4) if header_len > 4 else 0
        val = rng.choice([0, -1, 1, 2, 3, -2**31, 2**31 - 1, 2**20, 2**20 + 1, 7, 255, 4096, 65536])
        b[off:off + 4] = struct.pack("<i", val)
    elif kind == 1:  # a field nudged by a little
        off = rng.randrange(0, header_len - 3, 4) if header_len > 4 else 0
        (v,) = struct.unpack_from("<i", b, off)
        b[off:off + 4] = struct.pack("<i", max(-2**31, min(2**31 - 1, v + rng.choice([-2, -1, 1, 2, 16]))))
    elif kind == 2:  # random bytes in the header
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(header_len)] = rng.randrange(256)
    else:  # the odd byte of v1/v2 headers: shared flag and group size
        off = rng.choice([36, 37, 38, 40]) if header_len == 256 else rng.randrange(28)
        b[off] = rng.randrange(256)
    return bytes(b)


def mutate_file(data, rng):
    kind = rng.randrange(4)
    if kind == 0:
        return data[:rng.randrange(len(data))]  # truncated
    if kind == 1:
        return data + bytes(rng.randrange(256) for _ in range(rng.choice([1, 3, 4, 64])))  # trailing junk
    if kind == 2:  # flipped bytes anywhere (weights become garbage or NaN: must still not crash)
        b = bytearray(data)
        for _ in range(rng.randint(1, 20)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    return data[:rng.choice([0, 1, 3, 4, 27, 28, 255, 256, 257])]


def mutate_tokenizer(data, rng):
    b = bytearray(data)
    kind = rng.randrange(4)
    if kind == 0:
        return bytes(b[:rng.randrange(len(b))])
    if kind == 1:  # a length field: walk to a random entry and break it
        off, target = 4, rng.randrange(VOCAB)
        for _ in range(target):
            (n,) = struct.unpack_from("<i", b, off + 4)
            off += 8 + n
        val = rng.choice([-1, -2**31, 2**31 - 1, 0, 7, 100000, len(b)])
        b[off + 4:off + 8] = struct.pack("<i", val)
        return bytes(b)
    if kind == 2:  # random bytes: pieces with invalid UTF-8, control bytes, escapes
        for _ in range(rng.randint(1, 30)):
            b[rng.randrange(4, len(b))] = rng.choice([0, 0x1B, 0x07, 0x80, 0xC2, 0x9B, 0xFF, rng.randrange(256)])
        return bytes(b)
    return bytes(b) + b"\x00\x00\x80\x3f\x01\x00\x00\x00A"  # one piece too many


def hostile_prompt(rng):
    kind = rng.randrange(5)
    if kind == 0:
        return bytes(rng.randrange(1, 256) for _ in range(rng.randint(1, 40)))  # random bytes, no NUL
    if kind == 1:
        return rng.choice([b"\xe4\xbd", b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80\x80"]) * 3
    if kind == 2:
        return "".join(chr(rng.randrange(1, 32)) for _ in range(20)).encode() + b"\x1b[31m\x7f"
    if kind == 3:
        return ("从前" * rng.choice([5, 300, 5000])).encode()  # longer than the context
    return " ".join(["\u200b", "\U0001F600", "\u202e", "龘", "\ufeff"] * 4).encode()


def test_fuzz_models_tokenizers_prompts(san, models, sp_tok_bin, tmp_path):
    rng = random.Random(1234)
    tok = open(sp_tok_bin, "rb").read()
    cases = []
    for i in range(150):  # model headers and bodies
        v = rng.choice([0, 1, 2])
        data = models[v]
        data = mutate_header(data, rng, 28 if v == 0 else 256) if i % 2 == 0 else mutate_file(data, rng)
        cases.append((san["runq" if v == 2 else "run"], data, tok, ["-n", "8", "-i", "小狗"], f"model{i}"))
    for i in range(100):  # tokenizers
        v = rng.choice([0, 2])
        cases.append((san["runq" if v == 2 else "run"], models[v], mutate_tokenizer(tok, rng), ["-n", "8", "-i", "小狗"],
                      f"tok{i}"))
    for i in range(60):  # prompts, in every mode
        v = rng.choice([0, 2])
        mode = rng.choice(["generate", "tokenize", "generate"])
        cases.append((san["runq" if v == 2 else "run"], models[v], tok,
                      ["-n", "0", "-t", rng.choice(["0", "1"]), "-m", mode, "-i", hostile_prompt(rng)], f"prompt{i}"))
    for i, exe in enumerate([san["run"], san["runq"]] * 3):  # wrong runner, swapped files, chat
        cases.append((exe, models[0 if i % 2 else 2], tok, ["-n", "8"], f"swap{i}"))
        cases.append((exe, models[2 if i % 2 else 0], tok, ["-m", "chat", "-i", "你好", "-y", "\x1b]0;x\x07"], f"chat{i}"))
    with ThreadPoolExecutor(2) as ex:
        codes = list(ex.map(lambda c: check(*c, tmp_path), cases))
    assert len(codes) > 300
    assert 0 < codes.count(1) < len(codes)  # both outcomes were exercised
