"""Safe file writing shared by the Python tools (export.py, train.py, tokenizer.py, tinystories.py,
translate.py). No torch here, so the light tools can import it.

write_atomic(write, path) has write(tmp) fill a unique temporary file in the target's folder, syncs
it and renames it over the target: a crash, a kill -9 or an exception at any moment leaves the old
file or the new one, never a torn file. Temporary files are named "<name>.<random>.tmp"; the next
successful write to the same path removes the ones left by killed writers.

lock_folder(folder) keeps two processes (e.g. two training runs) from writing into one folder."""

import glob
import os
import stat
import tempfile

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


def write_atomic(write, path):
    """write(tmp) fills a new temporary file, which then replaces path atomically (see the module
    docstring). ValueError if path is a folder, device or FIFO; the temporary file is removed on any
    failure, KeyboardInterrupt included."""
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
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    finally:
        if fd >= 0:
            os.close(fd)
    fsync_folder(folder)
    _remove_leftovers(target, tmp)


def write_bytes_atomic(path, chunks):
    """write_atomic for data in memory: chunks is bytes or an iterable of bytes."""
    def write(tmp):
        with open(tmp, "wb") as f:
            for c in [chunks] if isinstance(chunks, (bytes, bytearray)) else chunks:
                f.write(c)
    write_atomic(write, path)


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
