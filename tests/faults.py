"""Fault injection for the tests, without root where possible: a disk that fills up, a process
killed with SIGKILL at a point it reports, and a check that nothing of ours outlives its parent.

- small_disk(path, kb, mode): a folder with about kb KB of room. As root, a tmpfs of that size
  mounted there (ENOSPC, as on a real full disk); otherwise (or with mode="rlimit") a plain folder
  plus a file-size limit (RLIMIT_FSIZE, EFBIG) that the test passes to the child as preexec_fn.
- kill_when(cmd, marker): runs cmd and SIGKILLs it the moment a line containing marker appears on
  its stdout or stderr (a line ends at "\n" or "\r", so a progress bar's updates count): the test
  schedules the kill by what the program says it is doing, never by a sleep tuned to one machine.
- memory_limit(mb): a preexec_fn capping the child's address space (RLIMIT_AS).
- tagged(env) / survivors(tag): every process started with the tag in its environment (children
  inherit it) can be found afterwards in /proc; survivors() lists those still alive."""

import contextlib
import os
import re
import resource
import signal
import subprocess
import sys
import time
import uuid


def can_mount():
    return sys.platform.startswith("linux") and os.geteuid() == 0


@contextlib.contextmanager
def small_disk(path, kb, mode="auto"):
    """Yields (folder, preexec_fn): run the program under test with preexec_fn=... so that the
    limit applies to it when there is no tmpfs (preexec_fn is None when there is one).
    mode: "auto" (tmpfs when root), "tmpfs" (skips the test without root) or "rlimit"."""
    os.makedirs(path, exist_ok=True)
    if mode == "tmpfs" and not can_mount():
        import pytest
        pytest.skip("a tmpfs needs root")
    mounted = False
    if mode != "rlimit" and can_mount():
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kb}k,mode=0755", "tmpfs", str(path)],
                                 capture_output=True).returncode == 0
    if mounted:
        try:
            yield str(path), None
        finally:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
        return

    def limit():
        # a file may not grow past kb KB; SIGXFSZ would kill the writer, EFBIG is what it must handle
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (kb * 1024, kb * 1024))

    yield str(path), limit


def memory_limit(mb):
    """preexec_fn: the child may map at most mb MB (a runaway allocation fails instead of swapping)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (mb << 20, mb << 20))
    return limit


def tagged(env=None):
    """(env, tag): env with a fresh tag that the process and all its children carry."""
    tag = uuid.uuid4().hex
    return dict(env if env is not None else os.environ, LLAMA2_TEST_TAG=tag), tag


def survivors(tag, wait=10.0):
    """pids of live processes that carry tag, after waiting up to `wait` s for them to go (a killed
    parent's children may take a moment to notice)."""
    needle = f"LLAMA2_TEST_TAG={tag}".encode()
    deadline = time.monotonic() + wait
    while True:
        alive = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if needle in f.read().split(b"\0"):
                        with open(f"/proc/{pid}/stat", "rb") as s:
                            if s.read().rsplit(b")", 1)[1].split()[0] != b"Z":  # zombies are gone already
                                alive.append(int(pid))
            except OSError:
                continue
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def kill_when(cmd, marker, env=None, cwd=None, timeout=120, preexec_fn=None):
    """Runs cmd, SIGKILLs it as soon as a line of its output contains marker (a str, or a compiled
    bytes regex searched in the output); returns everything it printed up to then (str). Fails when
    the program ends before it prints marker."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                         preexec_fn=preexec_fn)
    out = b""
    want = marker if isinstance(marker, re.Pattern) else re.compile(re.escape(marker.encode("utf-8")))
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            chunk = os.read(p.stdout.fileno(), 65536)  # whatever is there: a "\r" update has no "\n"
            if not chunk:
                break
            out += chunk
            if want.search(out):
                p.send_signal(signal.SIGKILL)
                p.wait()
                return out.decode("utf-8", "replace")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
    text = out.decode("utf-8", "replace")
    raise AssertionError(f"{cmd[:3]}... ended (rc {p.returncode}) before printing {marker!r}:\n{text[-2000:]}")
