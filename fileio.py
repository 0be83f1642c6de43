"""Safe file writing shared by the Python tools (export.py, train.py, tokenizer.py, tinystories.py,
translate.py). No torch here, so the light tools can import it.

write_atomic(write, path) has write(tmp) fill a unique temporary file in the target's folder, syncs
it and renames it over the target: a crash, a kill -9 or an exception at any moment leaves the old
file or the new one, never a torn file. Temporary files are named "<name>.<random>.tmp"; the next
successful write to the same path removes the ones left by killed writers.

A full disk (ENOSPC) or a file-size limit (EFBIG, ulimit -f) while writing is raised as DiskFull,
whose message says so in one line, whatever the writer reported: torch.save's stream writer and
numpy's tofile lose the errno ("unexpected pos 576 vs 534", "629205 requested and 618496 written").

lock_folder(folder) keeps two processes (e.g. two training runs) from writing into one folder."""

import errno
import gc
import glob
import os
import re
import stat
import tempfile
import traceback

try:
    import resource  # POSIX: the file-size limit
except ImportError:
    resource = None

try:
    import fcntl  # POSIX; on Windows there are no locks and leftovers are not cleaned
except ImportError:
    fcntl = None


def _resolve_target(path):
    """The file a write to path replaces. A symlink is written through (the link stays, the file it
    points to is replaced); anything but a regular file or nothing is refused with a ValueError."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return real, None
    if stat.S_ISDIR(st.st_mode):
        raise ValueError(f"{path} is a folder; give the path of the file to write")
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{path} is not a regular file (a device, FIFO or socket); refusing to replace it")
    return real, st


def _new_file_mode(existing):
    """The mode the new file should get: the old file's, else what open() would give (0666 & ~umask);
    mkstemp alone would leave it 0600."""
    if existing is not None:
        return stat.S_IMODE(existing.st_mode)
    try:
        with open("/proc/self/status") as f:  # reading the umask without changing it (Linux)
            umask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def _lock_nb(fd):
    """Try to take the exclusive lock on fd; True if we have it (always True without fcntl)."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _remove_leftovers(target, own_tmp):
    """Remove "<name>.*.tmp" (and the old fixed "<name>.tmp") beside target whose writer is gone: a
    live writer holds a lock on its temporary file for as long as it writes, a killed one does not."""
    if fcntl is None:
        return
    folder, name = os.path.split(target)
    pattern = os.path.join(glob.escape(folder), glob.escape(name))
    for tmp in glob.glob(pattern + ".*.tmp") + glob.glob(pattern + ".tmp"):
        if tmp == own_tmp:
            continue
        try:
            fd = os.open(tmp, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode) and _lock_nb(fd):
                os.remove(tmp)
        except OSError:
            pass
        finally:
            os.close(fd)


def fsync_folder(folder):
    """Make a rename in folder durable (no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class DiskFull(OSError):
    """No room for a file: "no space left on <path> (need ~N MB, ...)". An OSError, so every tool's
    handler of OSError already prints it as its one line; it takes only the message, so it pickles
    (a pool worker's error reaches the main process intact)."""


# what the writers say about a short write when they do not pass the errno on
_SHORT_WRITE = re.compile(r"unexpected pos \d+ vs \d+|PytorchStreamWriter failed writing|file write failed"
                          r"|\d+ requested and \d+ written")


def _looks_full(e):
    if getattr(e, "errno", None) is not None:
        return e.errno in (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC))
    return isinstance(e, (OSError, RuntimeError)) and _SHORT_WRITE.search(str(e)) is not None


def _mb(n):
    return f"{n / 2**20:.1f}" if n < 10 * 2**20 else f"{n / 2**20:.0f}"


def _size_limit():
    if resource is None:
        return None
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def disk_full(e, path, need=0, written=0):
    """DiskFull for path when e is a full disk or the file-size limit (need: the bytes the whole
    file takes, written: how far the writer got), else None. A short write without an errno counts
    only when the room left (or the size limit) really is too small, so an I/O error stays one."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        st = os.statvfs(folder)
        free = st.f_bavail * st.f_frsize
    except (OSError, AttributeError):
        free = None
    limit = _size_limit()
    need = max(need, written)
    code = getattr(e, "errno", None)
    if code is None and isinstance(e, (OSError, RuntimeError)) and _SHORT_WRITE.search(str(e)):
        if limit is not None and written + (1 << 20) > limit:
            code = errno.EFBIG
        elif free is not None and free < max(need - written, 1 << 20):
            code = errno.ENOSPC
    if code == errno.EFBIG:
        where = f"the file-size limit (ulimit -f) is {_mb(limit)} MB" if limit is not None else "the file is too large"
        return DiskFull(f"no space left on {path} (need ~{_mb(need)} MB; {where})")
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        room = f", {_mb(free)} MB free" if free is not None else ""
        return DiskFull(f"no space left on {path} (need ~{_mb(need)} MB{room})")
    return None


def nbytes(obj):
    """The bytes of the arrays and tensors in a nested dict/list/tuple: about what saving it takes."""
    if isinstance(obj, dict):
        return sum(nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(nbytes(v) for v in obj)
    n = getattr(obj, "nbytes", 0)
    return n if isinstance(n, int) else 0


def write_atomic(write, path, size=0):
    """write(tmp) fills a new temporary file, which then replaces path atomically (see the module
    docstring). ValueError if path is a folder, device or FIFO; DiskFull when the disk or the
    file-size limit stops the write (size: about how many bytes the file takes, for its message);
    the temporary file is removed on any failure, KeyboardInterrupt included."""
    target, existing = _resolve_target(path)
    folder, name = os.path.split(target)
    fd, tmp = tempfile.mkstemp(prefix=name + ".", suffix=".tmp", dir=folder)
    try:
        _lock_nb(fd)  # marks the temporary file as live for _remove_leftovers of other writers
        if hasattr(os, "fchmod"):
            os.fchmod(fd, _new_file_mode(existing))
        write(tmp)
        os.fsync(fd)  # same file: its data reach the disk before the rename does
        if fcntl is None:  # Windows cannot rename a file that is open
            os.close(fd)
            fd = -1
        os.replace(tmp, target)
    except BaseException as e:
        try:
            written = os.path.getsize(tmp)
        except OSError:
            written = 0
        if isinstance(e, Exception) and _looks_full(e):
            # the writer (torch's, say) still holds the file open from the traceback's frames, and an
            # open file keeps its blocks: let go of both before the free space is measured
            x = e
            while x is not None:  # the writer's first error (e.__context__) holds it as well
                traceback.clear_frames(x.__traceback__)
                x = x.__context__
            gc.collect()
            if fd >= 0:
                os.close(fd)
                fd = -1
        try:
            os.remove(tmp)
        except OSError:
            pass
        full = disk_full(e, path, size, written) if fd < 0 else None
        if full is not None:
            raise full from None
        raise
    finally:
        if fd >= 0:
            os.close(fd)
    fsync_folder(folder)
    _remove_leftovers(target, tmp)


def write_bytes_atomic(path, chunks):
    """write_atomic for data in memory: chunks is bytes or an iterable of bytes."""
    chunks = [chunks] if isinstance(chunks, (bytes, bytearray)) else list(chunks)

    def write(tmp):
        with open(tmp, "wb") as f:
            for c in chunks:
                f.write(c)
    write_atomic(write, path, sum(map(len, chunks)))


def lock_folder(folder, user="another process"):
    """Take folder/.lock for the life of this process (the OS drops it when the process ends, even
    on kill -9). Returns the lock's file descriptor, which must stay open; ValueError naming the pid
    of the holder if another process has it. A no-op (returns None) without fcntl."""
    if fcntl is None:
        return None
    path = os.path.join(folder, ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    if not _lock_nb(fd):
        try:
            pid = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
        finally:
            os.close(fd)
        raise ValueError(f"{folder.rstrip(os.sep)}/ is in use by {user} (pid {pid})")
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd
