"""The fault-injection helpers themselves (tests/faults.py): the small disk fills, the kill lands at
the marker, and survivors() sees a process that outlived its killed parent."""

import os
import subprocess
import sys

import pytest

from faults import kill_when, memory_limit, small_disk, survivors, tagged


@pytest.mark.parametrize("mode", ["auto", "rlimit", "tmpfs"])
def test_small_disk_fills(tmp_path, mode):
    with small_disk(tmp_path / "disk", 64, mode) as (folder, preexec):
        if mode == "rlimit":
            assert preexec is not None
        code = f"open({os.path.join(folder, 'f')!r}, 'wb').write(b'x' * (1 << 20))"
        r = subprocess.run([sys.executable, "-c", code], preexec_fn=preexec, capture_output=True, text=True)
        assert r.returncode != 0
        assert "No space left on device" in r.stderr or "File too large" in r.stderr, r.stderr


def test_kill_when_and_survivors():
    env, tag = tagged()
    # a parent that starts a sleeping child, says so, then waits: the kill takes the parent only
    code = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
            "print('child started', flush=True); time.sleep(60)")
    out = kill_when([sys.executable, "-c", code], "child started", env=env)
    assert "child started" in out
    left = survivors(tag, wait=0.5)
    assert len(left) == 1  # the orphan: exactly what the tests of our tools must never see
    for pid in left:
        os.kill(pid, 9)
    assert survivors(tag) == []


def test_kill_when_sees_a_progress_bar_update():
    # "\r" ends the update, no newline follows: the kill must land while the program still sleeps
    code = "import sys, time; sys.stderr.write('\\rwork 1/9'); sys.stderr.flush(); time.sleep(60)"
    out = kill_when([sys.executable, "-c", code], "1/9", timeout=30)
    assert out.endswith("work 1/9")


def test_memory_limit():
    code = "b = bytearray(1 << 30)"
    r = subprocess.run([sys.executable, "-c", code], preexec_fn=memory_limit(512), capture_output=True, text=True)
    assert r.returncode != 0 and "MemoryError" in r.stderr
