"""The C unit tests (tests/test_run.c, tests/test_runq.c: every kernel against its reference loop on
plain arrays, the tokenizer's edge cases, the sampler's bounds), built for each instruction set the
engine has and run where this machine can: x86-64 AVX2 and AVX-512 (compiled only when the CPU
lacks it), the reference loops alone, under ASan/UBSan, aarch64 NEON with and without the
dot-product extension under qemu, and WebAssembly SIMD128 under node.
Run: .venv/bin/python -m pytest -q tests/test_c_units.py"""

import os
import platform
import subprocess

import pytest

from conftest import need_tool
from cbuild import REPO
from test_kernels import AVX512, X86, cpu_flags

ARM_CC, QEMU = "aarch64-linux-gnu-gcc", "qemu-aarch64"
CC = os.environ.get("CC", "cc")
SAN = ["-O1", "-g", "-march=native", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
       "-fno-omit-frame-pointer"]
# name: (compiler, flags, command prefix to run it, or None)
VARIANTS = {
    "avx2": (CC, ["-O2", "-fopenmp", "-march=x86-64-v3"], []),
    "avx512": (CC, ["-O2", "-fopenmp", "-march=icelake-server"], []),
    "scalar": (CC, ["-O2", "-DLLAMA2_SCALAR"], []),
    "sanitizers": (CC, SAN, []),
    "neon": (ARM_CC, ["-O2", "-fopenmp", "-static", "-march=armv8-a"], [QEMU, "-cpu", "max"]),
    "neon-dotprod": (ARM_CC, ["-O2", "-fopenmp", "-static", "-march=armv8.2-a+dotprod"], [QEMU, "-cpu", "max"]),
    "wasm": ("emcc", ["-O2", "-msimd128", "-sALLOW_MEMORY_GROWTH=1", "-sSINGLE_FILE=1"], ["node"]),
}
EXPECT_ISA = {"avx2": "avx2", "avx512": "avx512", "scalar": "scalar", "neon": "neon", "neon-dotprod": "neon+dotprod",
              "wasm": "wasm-simd128"}


@pytest.mark.parametrize("program", ["test_run", "test_runq"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_c_units(variant, program, tmp_path):
    cc, flags, prefix = VARIANTS[variant]
    if cc == ARM_CC:
        need_tool(ARM_CC, package="gcc-aarch64-linux-gnu")
        need_tool(QEMU, package="qemu-user")
    elif cc == "emcc":
        need_tool("emcc", package="emscripten")
        need_tool("node", package="nodejs")
    elif not X86 and variant != "scalar":
        pytest.skip(f"{variant} needs an x86-64 CPU")
    exe = tmp_path / (program + (".js" if cc == "emcc" else ""))
    env = dict(os.environ, NODE_PATH="/usr/share/nodejs") if cc == "emcc" else None
    subprocess.run([cc, "-ffp-contract=off", *flags, "-I", str(REPO), "-o", str(exe), str(REPO / "tests" / f"{program}.c"),
                    "-lm"], check=True, capture_output=True, env=env)
    if variant == "avx512" and not (AVX512 and "avx512_vnni" in cpu_flags()):
        pytest.skip("this CPU has no AVX-512 VNNI: the AVX-512 kernels were compiled, not run")
    if variant == "avx2" and "avx2" not in cpu_flags():
        pytest.skip("this CPU has no AVX2: compiled, not run")
    r = subprocess.run([*prefix, str(exe)], capture_output=True, text=True, cwd=tmp_path, timeout=600,
                       env=dict(os.environ, OMP_NUM_THREADS="1", ASAN_OPTIONS="detect_leaks=0"))
    print(r.stdout, r.stderr)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert "0 failed" in r.stdout
    if variant in EXPECT_ISA:  # the build really selected that ISA's kernels
        assert f"({EXPECT_ISA[variant]})" in r.stdout, r.stdout
