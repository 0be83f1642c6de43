"""Tests for fileio.py: atomic writes (unique temporary names, symlinks, special files, kill -9
leftovers, permissions) and the folder lock."""

import os
import signal
import stat
import subprocess
import sys

import pytest

from fileio import lock_folder, write_atomic, write_bytes_atomic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_write_replaces_whole_and_leaves_nothing_behind(tmp_path):
    out = tmp_path / "model.bin"
    write_bytes_atomic(str(out), b"first")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    out.chmod(0o640)
    write_bytes_atomic(str(out), [b"sec", b"ond"])
    assert out.read_bytes() == b"second" and stat.S_IMODE(out.stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["model.bin"]


def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    out = tmp_path / "ckpt.pt"
    out.write_bytes(b"old")

    def half(tmp):
        assert os.path.basename(tmp).startswith("ckpt.pt.") and tmp.endswith(".tmp")
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(half, str(out))
    assert out.read_bytes() == b"old" and os.listdir(tmp_path) == ["ckpt.pt"]


def test_two_writers_of_one_path_do_not_collide(tmp_path):
    # a fixed "<path>.tmp" made the second writer rename the first one's file away (two runs in one out_dir)
    out = tmp_path / "ckpt.pt"

    def outer(tmp):
        with open(tmp, "wb") as f:
            f.write(b"outer")
        write_bytes_atomic(str(out), b"inner")  # another writer finishes meanwhile
        assert out.read_bytes() == b"inner"

    write_atomic(outer, str(out))
    assert out.read_bytes() == b"outer" and os.listdir(tmp_path) == ["ckpt.pt"]


def test_symlink_is_written_through(tmp_path):
    (tmp_path / "disk").mkdir()
    real = tmp_path / "disk" / "model.bin"
    real.write_bytes(b"old")
    link = tmp_path / "model.bin"
    link.symlink_to(real)
    write_bytes_atomic(str(link), b"new")
    assert link.is_symlink() and real.read_bytes() == b"new"
    assert os.listdir(tmp_path / "disk") == ["model.bin"]


def test_special_files_are_refused_untouched(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    calls = []
    for target, msg in [(fifo, "not a regular file"), (tmp_path, "is a folder"), ("/dev/full", "not a regular file")]:
        with pytest.raises(ValueError, match=msg):
            write_atomic(calls.append, str(target))
    assert calls == [] and stat.S_ISFIFO(os.lstat(fifo).st_mode) and stat.S_ISCHR(os.lstat("/dev/full").st_mode)
    assert os.listdir(tmp_path) == ["fifo"]


WRITER = """import sys, time
sys.path.insert(0, sys.argv[1])
from fileio import write_atomic
def slow(tmp):
    with open(tmp, "wb") as f:
        f.write(b"x" * 100000)
        f.flush()
        print("writing", flush=True)
        time.sleep(60)
write_atomic(slow, sys.argv[2])
"""


def test_leftovers_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    out = tmp_path / "ckpt.pt"
    (tmp_path / "ckpt.pt.tmp").write_bytes(b"from an older version")
    (tmp_path / "other.bin.abc.tmp").write_bytes(b"not ours")
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, ROOT, str(out)], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "writing"
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        assert len(list(tmp_path.glob("ckpt.pt.*.tmp"))) == 2
        write_bytes_atomic(str(out), b"done")
        # the dead writer's file and the old fixed name are gone; the live writer's file is not
        (live,) = tmp_path.glob("ckpt.pt.*.tmp")
        assert live.stat().st_size == 100000 and not (tmp_path / "ckpt.pt.tmp").exists()
        assert (tmp_path / "other.bin.abc.tmp").exists() and out.read_bytes() == b"done"
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_lock_folder(tmp_path):
    fd = lock_folder(str(tmp_path), "another training run")
    try:
        r = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); from fileio import "
                            "lock_folder; lock_folder(sys.argv[2], 'another training run')", ROOT, str(tmp_path)],
                           capture_output=True, text=True)
        assert r.returncode != 0 and f"{tmp_path}/ is in use by another training run (pid {os.getpid()})" in r.stderr
    finally:
        os.close(fd)
    os.close(lock_folder(str(tmp_path)))  # free again once the holder let go


@pytest.mark.parametrize("mode", ["rlimit", "tmpfs"])
def test_full_disk_is_disk_full_whatever_the_writer_says(tmp_path, mode):
    from faults import small_disk
    # numpy's tofile reports a short write without an errno, open().write ENOSPC/EFBIG, torch.save
    # a RuntimeError of its stream writer: all three become the same DiskFull
    code = """if 1:
        import sys, numpy as np, torch
        sys.path.insert(0, sys.argv[2])
        from fileio import DiskFull, write_atomic, write_bytes_atomic
        a = np.zeros(100_000, dtype=np.float32)
        for name, write in [("np", a.tofile), ("torch", lambda t: torch.save(torch.from_numpy(a), t)),
                            ("bytes", None)]:
            path = sys.argv[1] + "/" + name
            try:
                if write is None:
                    write_bytes_atomic(path, a.tobytes())
                else:
                    write_atomic(write, path, a.nbytes)
            except DiskFull as e:
                print(e)
        """
    with small_disk(tmp_path / "disk", 128, mode) as (folder, preexec):
        r = subprocess.run([sys.executable, "-c", code, folder, ROOT], preexec_fn=preexec, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert [line.split(" (")[0] for line in lines] == [f"no space left on {folder}/{n}" for n in ("np", "torch", "bytes")]
        assert all("need ~0.4 MB" in line for line in lines), lines
        assert os.listdir(folder) == []
