"""The browser playground (web.c, web.html, web_worker.js; `make web`): headless Chromium loads the
page from a local HTTP server and must write exactly what the native runners write with the same
files and settings, stream, stop, and turn bad files into a message in the page. The wasm is built
once per session by `make web`; the native reference is the portable scalar build."""

import functools
import http.server
import os
import shutil
import subprocess
import threading
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

from cbuild import build, export, greedy_run, random_model, run_c
from conftest import need_tool
from test_kernels import KERNEL_SHAPES, prompt_with

REPO = Path(__file__).resolve().parent.parent
DEMO_MODEL, DEMO_TOK = REPO / "demo" / "stories_demo.bin", REPO / "demo" / "tok_demo.bin"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=900,1000"]


@pytest.fixture(scope="session")
def web_dir():
    need_tool("emcc", package="emscripten")
    r = subprocess.run(["make", "-C", str(REPO), "web"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return REPO / "web"


def serve(directory):
    """An HTTP server on 127.0.0.1 serving directory, as `make serve-web` does; returns (server, url)."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def start_chromium(user_data_dir):
    """Headless Debian chromium through its chromedriver: no driver download, no usage stats, no network."""
    need_tool("chromium", package="chromium")
    need_tool("chromedriver", package="chromium-driver")
    os.environ["SE_AVOID_STATS"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={user_data_dir}"]:
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=opts)


@pytest.fixture(scope="session")
def site(web_dir):
    server, url = serve(web_dir)
    yield url
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    driver = start_chromium(tmp_path_factory.mktemp("chromium"))
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def scalar_bins(tmp_path_factory):
    """The native runners built with the portable kernels, the reference for the browser's."""
    d = tmp_path_factory.mktemp("scalar")
    return {name: build(d, f"{name}.c", name, ["-O2", "-DLLAMA2_SCALAR"]) for name in ("run", "runq")}


def page_state(driver):
    return driver.execute_script("return document.body.dataset.state")


def wait_state(driver, states, timeout=120):
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: page_state(d) in states)
    return page_state(driver)


def text_of(driver, element_id):
    return driver.execute_script(f"return document.getElementById('{element_id}').textContent")


def open_page(driver, site, **params):
    """Loads the page with query parameters; returns (final state, #output, #error)."""
    driver.get(site + "?" + urllib.parse.urlencode(params))
    state = wait_state(driver, ("done", "error"))
    return state, text_of(driver, "output"), text_of(driver, "error")


def run_with_files(driver, site, model, tok, **params):
    """Picks a model and tokenizer with the file inputs and presses Generate."""
    driver.get(site + "?" + urllib.parse.urlencode(params))
    driver.find_element("id", "model-file").send_keys(str(model))
    driver.find_element("id", "tokenizer-file").send_keys(str(tok))
    driver.find_element("id", "generate").click()
    state = wait_state(driver, ("done", "error"))
    return state, text_of(driver, "output"), text_of(driver, "error")


def native(exe, model, tok, *args):
    r = run_c(exe, model, tok, *args)
    assert r.returncode == 0, r.stderr
    return r.stdout.decode("utf-8")[:-1]  # the page shows the story without ./run's final newline


def test_greedy_demo_matches_run(browser, site, scalar_bins, tmp_path):
    want = native(scalar_bins["run"], DEMO_MODEL, DEMO_TOK, "-t", 0, "-n", 100, "-i", "从前")
    state, out, err = open_page(browser, site, prompt="从前", temperature=0, steps=100, autostart=1)
    assert (state, err) == ("done", "")
    assert out == want
    assert float(browser.execute_script("return document.getElementById('stats').dataset.tokps")) > 0
    browser.save_screenshot(str(tmp_path / "web.png"))


def test_sampled_demo_matches_run(browser, site, scalar_bins, tmp_path):
    want = native(scalar_bins["run"], DEMO_MODEL, DEMO_TOK, "-s", 42, "-t", 0.8, "-i", "从前，有一只小狗")
    state, out, err = open_page(browser, site, prompt="从前，有一只小狗", temperature=0.8, seed=42, autostart=1)
    assert (state, err) == ("done", "")
    assert out == want and len(out) > 20
    browser.save_screenshot(str(tmp_path / "web.png"))


@pytest.mark.parametrize("version", [1, 2])
def test_own_files_fp32_and_int8(version, browser, site, scalar_bins, sp_tok_bin, tmp_path):
    """A user's model through the file inputs: version 1 runs on run.c's engine, version 2 on runq.c's."""
    model = random_model(512, seed=7, dim=48, n_heads=6, n_kv_heads=2, hidden_dim=80, shared=False, max_seq_len=64)
    path = export(model, tmp_path / f"mine_v{version}.bin", version)
    exe = scalar_bins["run" if version == 1 else "runq"]
    want = native(exe, path, sp_tok_bin, "-s", 5, "-t", 0.9, "-p", 0.8, "-n", 60, "-i", "小狗")
    state, out, err = run_with_files(browser, site, path, sp_tok_bin, prompt="小狗", temperature=0.9, topp=0.8,
                                     seed=5, steps=60)
    assert (state, err) == ("done", "")
    assert out == want
    assert ("runq" if version == 2 else "run)") in text_of(browser, "stats")


def test_bad_files_give_a_message(browser, site, sp_tok_bin, tmp_path):
    """A truncated model, a tokenizer of another model and a PNG renamed .bin each end in state
    error with die()'s one line in #error; the page then still runs the demo model."""
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(DEMO_MODEL.read_bytes()[:100_000])
    png = tmp_path / "picture.bin"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(3000))
    cases = [(truncated, DEMO_TOK, "truncated"), (DEMO_MODEL, sp_tok_bin, "wrong tokenizer"),
             (png, DEMO_TOK, "not a llama2.c model file")]
    for model, tok, message in cases:
        state, out, err = run_with_files(browser, site, model, tok, steps=20)
        assert state == "error", (model, out)
        assert message in err and err.count("\n") == 0, err
        assert Path(model).name in err or Path(tok).name in err
    browser.save_screenshot(str(tmp_path / "web_error.png"))
    state, out, err = open_page(browser, site, prompt="从前", steps=30, seed=1, autostart=1)
    assert (state, err) == ("done", "") and out.startswith("从前")


def test_stop(browser, site, scalar_bins, sp_tok_bin, tmp_path):
    """Stop ends a run early: the page is done, says stopped, and shows the start of the story.
    A context of 32768 tokens with quadratic attention keeps the run going for minutes, however
    late the click comes on a busy host."""
    import torch
    model = random_model(512, seed=3, dim=64, n_layers=1, n_heads=4, shared=False, max_seq_len=32768)
    with torch.no_grad():
        model.output.weight[1:3] = 0  # BOS and EOS score 0, below the best of 510 others: greedy never ends
    path = export(model, tmp_path / "long.bin", 1)
    start = native(scalar_bins["run"], path, sp_tok_bin, "-t", 0, "-n", 200, "-i", "小狗")
    driver = browser
    driver.get(site + "?temperature=0&steps=0&prompt=" + urllib.parse.quote("小狗"))
    driver.find_element("id", "model-file").send_keys(str(path))
    driver.find_element("id", "tokenizer-file").send_keys(str(sp_tok_bin))
    driver.find_element("id", "generate").click()
    wait_state(driver, ("running", "done", "error"))
    driver.find_element("id", "stop").click()
    assert wait_state(driver, ("done", "error")) == "done"
    out = text_of(driver, "output")
    assert "stopped" in text_of(driver, "stats")
    assert out.startswith(start) or start.startswith(out)


@pytest.fixture(scope="session")
def wasm_cli(tmp_path_factory, web_dir):
    """run.c and runq.c compiled as make web compiles them (SIMD128) but whole, command line and
    tests/hooks.c's debug variables included, for node (one .js with the wasm inside: this emscripten would fetch() a separate
    .wasm, which node cannot for a path): ./run's interface, so the kernel tests drive both alike."""
    need_tool("node", package="nodejs")
    d = tmp_path_factory.mktemp("wasm_cli")
    pre = d / "env.js"  # the runners' debug variables reach the module's getenv
    pre.write_text("Module.preRun = [function () { for (const k of ['LLAMA2_LOGITS', 'LLAMA2_PREFILL_BLOCK'])"
                   " if (process.env[k]) ENV[k] = process.env[k]; }];\n")
    bins = {}
    for name in ("run", "runq"):
        js = d / f"{name}.js"
        subprocess.run(["emcc", "-O3", "-ffp-contract=off", "-msimd128", "-sNODERAWFS=1", "-sALLOW_MEMORY_GROWTH=1", "-sSINGLE_FILE=1",
                        "--pre-js", str(pre), "-I", str(REPO), f'-DENGINE="{name}.c"', "-o", str(js), str(REPO / "tests" / "hooks.c")],
                       env=dict(os.environ, NODE_PATH="/usr/share/nodejs"), check=True, capture_output=True)
        sh = d / name
        sh.write_text(f'#!/bin/sh\nexec node {js} "$@"\n')
        sh.chmod(0o755)
        bins[name] = str(sh)
    return bins


@pytest.mark.parametrize("shared", [False, True], ids=["own-classifier", "shared-classifier"])
@pytest.mark.parametrize("shape", list(KERNEL_SHAPES))
def test_simd128_kernels_match_scalar(shape, shared, wasm_cli, scalar_bins, sp_model, sp_tok_bin, zh_stories, tmp_path):
    """The SIMD128 tiles (4 rows x 2 or 1 tokens, the remainder rows, group sizes 32 and 64) against
    the native portable build: the same greedy story, logits within the AVX2 tests' tolerance
    (fp32 sums 4 lanes apart; int8 sums are exact, only activations may round the other way).
    A shared classifier is the token embedding too: runq's wasm build reorders its rows into tile
    order only after reading the embedding from them."""
    import sentencepiece as spm
    from export import version2_export
    sp = spm.SentencePieceProcessor(model_file=sp_model)
    cfg = dict(KERNEL_SHAPES[shape])
    gs = cfg.pop("group_size")
    model = random_model(512, seed=13, shared=shared, max_seq_len=48, **cfg)
    paths = {"run": export(model, tmp_path / "k0.bin", 0), "runq": tmp_path / "k2.bin"}
    version2_export(model, str(paths["runq"]), group_size=gs)
    for n_tokens in (1, 33):  # one token; blocks of 2 tokens, 1 token, and a second block
        prompt = prompt_with(sp, zh_stories, n_tokens)
        for name, path in paths.items():
            a, ra = greedy_run(wasm_cli[name], path, sp_tok_bin, prompt, 48, tmp_path)
            b, rb = greedy_run(scalar_bins[name], path, sp_tok_bin, prompt, 48, tmp_path)
            assert a == b, (name, n_tokens)
            atol = 1e-3 if name == "run" else 0.02 * np.abs(rb["logits"]).max()
            np.testing.assert_allclose(ra["logits"], rb["logits"], atol=atol, rtol=0)
