"""Fuzzing the C runners: mutated and truncated model and tokenizer files, NaN/inf/huge weights and
scales, hostile prompts, numeric edge flags and special files (FIFO, folder, device, symlinks),
against run and runq built with -fsanitize=address,undefined. Every case must end cleanly:
exit 0 with valid UTF-8 and no control characters on stdout, or exit 1 with one line on stderr;
never a signal, a hang or a sanitizer report. Plus regression tests for what a campaign found.

The campaign is seeded (FUZZ_SEED, default 1234) and sized by FUZZ_CASES (default 400, what
`make test` runs); `make fuzz N=20000` runs a long one (FUZZ_JOBS processes at a time, default 2).
Run: .venv/bin/python -m pytest -q tests/test_fuzz_c.py"""

import os
import random
import struct
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from cbuild import binary, build, export, random_model
from export import read_bin_header  # cbuild put the repo on sys.path

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


SPECIALS = ["fifo", "dir", "devnull", "devzero", "dangling", "linkfifo"]  # and ("link", bytes)


def place(spec, path):
    """Puts a case's model or tokenizer at path: bytes become a file; a SPECIALS name a special file."""
    if isinstance(spec, bytes):
        path.write_bytes(spec)
    elif spec == "fifo":
        os.mkfifo(path)
    elif spec == "dir":
        path.mkdir()
    elif spec in ("devnull", "devzero"):
        path.symlink_to(f"/dev/{spec[3:]}")
    elif spec == "dangling":
        path.symlink_to(path.with_name(path.name + ".missing"))
    elif spec == "linkfifo":
        os.mkfifo(path.with_name(path.name + ".fifo"))
        path.symlink_to(path.with_name(path.name + ".fifo"))
    else:  # ("link", bytes): a symlink to a regular file, which is fine
        path.with_name(path.name + ".real").write_bytes(spec[1])
        path.symlink_to(path.with_name(path.name + ".real"))
    return path


def remove(path):
    for p in (path, path.with_name(path.name + ".real"), path.with_name(path.name + ".fifo")):
        if p.is_dir() and not p.is_symlink():
            p.rmdir()
        elif p.is_symlink() or p.exists():
            p.unlink()


def run_case(exe, model, tok, args, name, tmp_path, full_stdout=False):
    """Runs one case; returns (exit code, None) or (exit code, what went wrong)."""
    mp = place(model, tmp_path / f"{name}.bin")
    tp = place(tok, tmp_path / f"{name}.tok")
    env = dict(os.environ, **SAN_ENV)
    try:
        with open("/dev/full", "wb") if full_stdout else open(os.devnull, "rb") as full:
            r = subprocess.run([exe, str(mp), "-z", str(tp), *args], stdout=full if full_stdout else subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=120, env=env)
    except subprocess.TimeoutExpired:
        return None, f"{name}: hung (args {args!r})"
    finally:
        remove(mp)
        remove(tp)
    err = r.stderr.decode("utf-8", "replace")
    desc = f"{name}: rc={r.returncode} args={args!r} stderr={err[:800]!r}"
    if "Sanitizer" in err or "runtime error" in err or r.returncode not in (0, 1):
        return r.returncode, desc
    if r.returncode == 1 and not (err.startswith("error: ") and err.count("\n") == 1):
        return 1, desc
    if r.returncode == 0 and full_stdout:
        return 0, desc + " (stdout is /dev/full, yet exit 0)"
    if r.returncode == 0 and not full_stdout:
        try:
            text = r.stdout.decode("utf-8")
        except UnicodeDecodeError:
            return 0, desc + " (stdout is not UTF-8)"
        if any((ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F for c in text):
            return 0, desc + " (a control character on stdout)"
    return r.returncode, None


def check(exe, model_bytes, tok_bytes, args, name, tmp_path, full_stdout=False):
    rc, problem = run_case(exe, model_bytes, tok_bytes, args, name, tmp_path, full_stdout)
    assert problem is None, problem
    return rc


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


def float_regions(data):
    """(offset, count) of the fp32 values in a model file, and for v2 the (offset, count) of the
    int8 values and of the scales of each quantized tensor."""
    import tempfile
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        f.write(data)
        f.flush()
        h = read_bin_header(f.name)
    if h["version"] != 2:
        return [(h["offset"], (len(data) - h["offset"]) // 4)], []
    dim, hid, L, V, gs = h["dim"], h["hidden_dim"], h["n_layers"], h["vocab_size"], h["group_size"]
    kv = h["n_kv_heads"] * dim // h["n_heads"]
    norms = (h["offset"], 2 * L * dim + dim)
    sizes = [V * dim] + [n for n in (dim * dim, kv * dim, kv * dim, dim * dim, hid * dim, dim * hid, hid * dim)
                         for _ in range(L)] + ([] if h["shared"] else [V * dim])
    off, quant = norms[0] + 4 * norms[1], []
    for n in sizes:
        quant.append((off, n, off + n, n // gs))
        off += n + 4 * (n // gs)
    return [norms], quant


POISON = [float("nan"), float("inf"), -float("inf"), 3.4e38, -3.4e38, 1e30, 1e20, 1e-45]


def poison(data, rng):
    """Some weights (v0/v1), norms or scales (v2) set to NaN, inf or huge values; v2 int8 values to -128."""
    b = bytearray(data)
    floats, quant = float_regions(data)
    for _ in range(rng.choice([1, 1, 3, 50])):
        if quant and rng.random() < 0.6:
            qoff, qn, soff, sn = rng.choice(quant)
            if rng.random() < 0.2:
                b[qoff + rng.randrange(qn)] = 0x80  # -128
                continue
            off = soff + 4 * rng.randrange(sn)
        else:
            off, n = rng.choice(floats)
            off += 4 * rng.randrange(n)
        b[off:off + 4] = struct.pack("<f", rng.choice(POISON))
    return bytes(b)


# numeric flags in the forms people (and scripts) type, valid and not
NUMBERS = ["0", "-0", "1", "0.5", "1e-30", "9e-31", "1e-40", "1e-300", "1e-400", "1e30", "1.1e30", "1e39", "1e400",
           "-1", "-1e-30", "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "0x10", "0x1p-3", "1e3", " 1", "1 ", "",
           "+1", "1.", ".5", "1e", "e1", "--1", "0.9999999", "1.0000001", "2147483647", "2147483648", "-2147483648",
           "-2147483649", "18446744073709551615", "18446744073709551616", "99999999999999999999999", "007", "1_000"]
SEEDS = ["0", "1", "42", "-1", "-5", "4294967296", "18446744073709551615"]


def numeric_flags(rng):
    args = []
    for flag in rng.sample(["-t", "-p", "-n", "-s"], rng.randint(1, 4)):
        pool = NUMBERS + (SEEDS if flag == "-s" else ["0.9", "0.01", "1e-9", "1e-20"] if flag == "-p" else
                          ["8", "24", "25"] if flag == "-n" else ["0.8", "1e-20", "1e20", "1e-5"])
        args += [flag, rng.choice(pool) if rng.random() < 0.8 else repr(rng.uniform(-2, 2))]
    if "-n" not in args:
        args += ["-n", "12"]
    return args


def campaign_cases(rng, n, san, models, poisoned, tok):
    """n cases of every kind, in proportions that give each a few dozen in the default 400."""
    cases = []
    for i in range(n):
        kind = rng.choices(["header", "body", "poison", "tokenizer", "prompt", "flags", "special", "swap", "full"],
                           [12, 12, 16, 12, 10, 24, 6, 4, 4])[0]
        v = rng.choice([0, 1, 2])
        exe, model, t, args = san["runq" if v == 2 else "run"], models[v], tok, ["-n", "8", "-i", "小狗"]
        full = False
        if kind == "header":
            model = mutate_header(model, rng, 28 if v == 0 else 256)
        elif kind == "body":
            model = mutate_file(model, rng)
        elif kind == "poison":
            model = poison(poisoned[v] if rng.random() < 0.5 else model, rng)
            args = ["-t", rng.choice(["0", "1", "0.8", "1e-20"]), "-p", rng.choice(["0.9", "0", "1e-9"]), "-n", "12"]
        elif kind == "tokenizer":
            t = mutate_tokenizer(tok, rng)
        elif kind == "prompt":
            mode = rng.choice(["generate", "tokenize", "generate", "chat"])
            args = ["-n", "0", "-t", rng.choice(["0", "1"]), "-m", mode, "-i", hostile_prompt(rng)]
        elif kind == "flags":
            args = numeric_flags(rng) + ["-i", rng.choice(["", "小狗", "从前，有一只小狗"])]
        elif kind == "special":
            which = rng.choice(["model", "tok", "both"])
            if which != "tok":
                model = rng.choice(SPECIALS) if rng.random() < 0.85 else ("link", model)
            if which != "model":
                t = rng.choice(SPECIALS) if rng.random() < 0.85 else ("link", tok)
        elif kind == "swap":  # the other runner's file
            exe = san["run" if v == 2 else "runq"]
        else:  # stdout is a full disk
            full = True
            args = rng.choice([["-n", "8", "-i", "小狗"], ["-m", "tokenize", "-i", "小狗"], ["-t", "0", "-n", "0"]])
        cases.append((exe, model, t, args, f"{kind}{i}", full))
    return cases


@pytest.fixture(scope="module")
def poisoned(models):
    """The fuzz models with a first layer of weights a diverged training run could leave: huge values."""
    rng = random.Random(7)
    out = {}
    for v, data in models.items():
        b = bytearray(data)
        floats, quant = float_regions(data)
        off, n = floats[0]
        for k in rng.sample(range(n), min(n, 64)):
            b[off + 4 * k:off + 4 * k + 4] = struct.pack("<f", rng.choice([1e30, -1e30, 3e38]))
        out[v] = bytes(b)
    return out


def test_fuzz_campaign(san, models, poisoned, sp_tok_bin, tmp_path):
    seed = int(os.environ.get("FUZZ_SEED", "1234"))
    n = int(os.environ.get("FUZZ_CASES", "400"))
    jobs = int(os.environ.get("FUZZ_JOBS", "2"))
    rng = random.Random(seed)
    cases = campaign_cases(rng, n, san, models, poisoned, open(sp_tok_bin, "rb").read())
    with ThreadPoolExecutor(jobs) as ex:
        results = list(ex.map(lambda c: run_case(*c[:5], tmp_path, c[5]), cases))
    problems = [p for _, p in results if p]
    codes = [rc for rc, _ in results]
    kinds = {}
    for (*_, name, _), (rc, _) in zip(cases, results):
        k = name.rstrip("0123456789")
        kinds[k] = kinds.get(k, 0) + 1
    print(f"fuzz campaign: seed {seed}, {n} cases {kinds}, exit 0: {codes.count(0)}, exit 1: {codes.count(1)}, "
          f"problems: {len(problems)}")
    assert not problems, f"{len(problems)} of {n} cases failed:\n" + "\n".join(problems[:20])
    assert 0 < codes.count(1) < len(codes)  # both outcomes were exercised


# -----------------------------------------------------------------------------
# regression tests for what the campaign found (issue 16), each failing on the code before it

def test_sampler_never_reads_out_of_bounds(san, models, sp_tok_bin, tmp_path):
    tok = open(sp_tok_bin, "rb").read()
    for v in (0, 2):
        exe = san["runq" if v == 2 else "run"]
        # a flat distribution with top-p < 1/vocab kept no candidate: probindex[-1]
        assert check(exe, models[v], tok, ["-t", "1e30", "-p", "1e-9", "-n", "16", "-s", "3"], f"flat{v}", tmp_path) == 0
        # logits / 1e-30 overflow to inf (inf - inf = NaN): the tiny temperature's limit, the argmax
        for t in ("1e-30", "1e-20"):
            mp = tmp_path / "m.bin"
            mp.write_bytes(models[v])
            greedy = run_c_san(exe, mp, sp_tok_bin, "-t", "0", "-n", "16")
            tiny = run_c_san(exe, mp, sp_tok_bin, "-t", t, "-n", "16", "-s", "5")
            assert tiny.returncode == 0 and tiny.stdout == greedy.stdout, tiny.stderr
        # positive values that are 0 or denormal as floats are refused
        for flag, val in (("-t", "1e-40"), ("-p", "1e-40")):
            r = run_c_san(exe, mp, sp_tok_bin, flag, val)
            assert r.returncode == 1 and b"bad value" in r.stderr and r.stderr.count(b"\n") == 1


def run_c_san(exe, model, tok, *args, stdout=subprocess.PIPE):
    return subprocess.run([exe, str(model), "-z", str(tok), *args], stdout=stdout, stderr=subprocess.PIPE,
                          timeout=120, env=dict(os.environ, **SAN_ENV))


def test_non_finite_weights_stop_with_one_line(san, models, sp_tok_bin, tmp_path):
    # NaN weights or v2 scales printed <unk> forever (reading before the sampler's buffer) and exited 0
    for v in (0, 1, 2):
        floats, quant = float_regions(models[v])
        b = bytearray(models[v])
        off = quant[0][2] if quant else floats[0][0]  # v2: the embedding's first scale; else the first weight
        for k in range(4 if v == 2 else 32 * 4):  # v0/v1: 4 whole embedding rows (one is the BOS row)
            b[off + 4 * k:off + 4 * k + 4] = struct.pack("<f", float("nan"))
        mp = tmp_path / f"nan{v}.bin"
        mp.write_bytes(bytes(b))
        # scoring too: its losses are taken by all threads, the error must still be one line
        for args in (["-t", "0", "-n", "8"], ["-t", "1", "-n", "8"], ["-t", "2", "-m", "score", "-i", "从前有一只小猫。"]):
            r = run_c_san(san["runq" if v == 2 else "run"], mp, sp_tok_bin, *args)
            err = r.stderr.decode()
            assert r.returncode == 1 and err.count("\n") == 1, err
            if v == 2:  # runq checks its scales and norms at load: int8 activations would hide a NaN
                assert "the model has a NaN or inf int8 scale" in err, err
            else:
                assert err.startswith("error: the model produced non-finite logits at position "), err
        if v < 2:  # and the OpenMP build (the sanitized one has no threads), 2 threads taking the losses
            r = run_c_san(binary("run"), mp, sp_tok_bin, "-t", "2", "-m", "score", "-i", "从前有一只小猫。" * 40)
            assert r.returncode == 1 and r.stderr.startswith(b"error: the model produced non-finite logits at position 0"), r.stderr
            assert r.stderr.count(b"\n") == 1, r.stderr


def test_seed_and_steps_are_strict_integers(san, models, sp_tok_bin, tmp_path):
    mp = tmp_path / "m.bin"
    mp.write_bytes(models[0])
    # -s 1e3 ran seed 1, -s 0x10 seed 0 (= the time), 2**64 saturated; -n 1e3 ran 1000 steps
    for flag, val in (("-s", "1e3"), ("-s", "0x10"), ("-s", "18446744073709551616"), ("-s", "1.5"), ("-s", " 7"),
                      ("-s", "-2147483649"), ("-n", "1e3"), ("-n", "0x10"), ("-n", "-1"), ("-n", "2147483648")):
        r = run_c_san(san["run"], mp, sp_tok_bin, flag, val)
        assert r.returncode == 1 and r.stderr.startswith(f"error: bad value '{val}' for {flag}".encode()), r.stderr

    def story(seed):
        r = run_c_san(san["run"], mp, sp_tok_bin, "-s", seed, "-n", "16", "-t", "1")
        assert r.returncode == 0, r.stderr
        return r.stdout

    assert story("-5") == story("18446744073709551611")  # a negative seed wraps, as the original's atoi
    assert story("1000") != story("1")


def test_special_files_are_refused_without_blocking(san, models, sp_tok_bin, tmp_path):
    # a FIFO as the model or tokenizer blocked in open() forever
    tok = open(sp_tok_bin, "rb").read()
    for spec in SPECIALS + ["link"]:
        rc = check(san["run"], spec if spec != "link" else ("link", models[0]), tok, ["-n", "4"], f"m_{spec}", tmp_path)
        assert rc == (0 if spec == "link" else 1), spec
        rc = check(san["run"], models[0], spec if spec != "link" else ("link", tok), ["-n", "4"], f"t_{spec}", tmp_path)
        assert rc == (0 if spec == "link" else 1), spec


def test_stdout_write_errors_fail(san, models, sp_tok_bin, tmp_path):
    # ./run ... > /dev/full exited 0
    mp = tmp_path / "m.bin"
    mp.write_bytes(models[0])
    for args in (["-n", "8", "-i", "小狗"], ["-m", "tokenize", "-i", "小狗"]):
        with open("/dev/full", "wb") as full:
            r = run_c_san(san["run"], mp, sp_tok_bin, *args, stdout=full)
        err = r.stderr.decode()
        assert r.returncode == 1 and err.count("\n") == 1 and err.startswith("error: cannot write the output"), err
