"""Speed of the browser playground (make web: WebAssembly SIMD128 in headless Chromium) next to the
native runners on one thread, in the same run: the demo model and a random zh-15M (fp32 and int8),
256 greedy tokens from an empty prompt, generation tok/s as ./run reports it.

    python3 bench/bench_web.py --runs=3
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))

from bench_run import OUT, make_models, make_tokenizer, run  # noqa: E402
from test_web import serve, start_chromium, wait_state  # noqa: E402


def browser_tokps(driver, url, model, tok):
    driver.get(url + "?" + urllib.parse.urlencode(dict(prompt="", temperature=0, steps=256)))
    driver.find_element("id", "model-file").send_keys(str(model))
    driver.find_element("id", "tokenizer-file").send_keys(str(tok))
    driver.find_element("id", "generate").click()
    if wait_state(driver, ("done", "error"), timeout=600) != "done":
        sys.exit("error: the page failed: " + driver.find_element("id", "error").text)
    return float(driver.execute_script("return document.getElementById('stats').dataset.tokps"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for target in ("run", "web"):
        r = subprocess.run(["make", "-C", str(REPO), target], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"error: make {target} failed: {r.stderr.strip()[-500:]}")
    tok5000, _ = make_tokenizer()
    zh15 = make_models("zh-15M")
    cases = [("demo", "run", REPO / "demo" / "stories_demo.bin", REPO / "demo" / "tok_demo.bin"),
             ("zh-15M", "run", zh15[0], tok5000), ("zh-15M", "runq", zh15[2], tok5000)]
    cpu = re.search(r"Model name:\s*(.+)", subprocess.run(["lscpu"], capture_output=True, text=True).stdout)
    print(f"CPU: {cpu.group(1) if cpu else 'unknown'}; median of {args.runs} runs, 256 tokens")
    print()
    print("| model | runner | native tok/s (1 thread) | browser tok/s | browser / native |")
    print("|---|---|---|---|---|")
    server, url = serve(REPO / "web")
    with tempfile.TemporaryDirectory() as profile:
        driver = start_chromium(profile)
        try:
            for name, runner, model, tok in cases:
                def native():
                    err = run([REPO / runner, model, "-z", tok, "-t", 0, "-n", 256, "-i", ""], 1)
                    return float(re.search(r"achieved tok/s: ([0-9.]+)", err).group(1))
                n = statistics.median(native() for _ in range(args.runs))
                b = statistics.median(browser_tokps(driver, url, model, tok) for _ in range(args.runs))
                print(f"| {name} | {runner} | {n:.0f} | {b:.0f} | {100 * b / n:.0f}% |", flush=True)
        finally:
            driver.quit()
            server.shutdown()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
