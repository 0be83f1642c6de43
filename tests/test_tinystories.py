"""Tests for tinystories.py: download (through huggingface_hub against a hub stand-in on 127.0.0.1:
resume, checksums, errors, corrupt and unsafe archives), download_model, train_vocab, pretokenize
(round trip, mixed formats, broken input) and the BatchStream (exact resume)."""

import hashlib
import io
import json
import os
import re
import signal
import stat
import subprocess
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import sentencepiece as spm
import torch

import tinystories
from faults import kill_when, small_disk
from tinystories import BatchStream, generate_stories

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tinystories.py")
DATASET_PATH = "/datasets/adam89/TinyStoriesChinese/resolve/main/TinyStories_all_data_zh.tar.gz"


def cli(*args, cwd=None, env_extra=None, timeout=120, preexec_fn=None):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for k in ("HF_ENDPOINT", "HF_TOKEN", "HF_HUB_OFFLINE", "HF_HOME"):
        env.pop(k, None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout, preexec_fn=preexec_fn)


def assert_user_error(r, *words):
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stderr, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert lines and lines[-1].startswith(("error:", "usage:", "tinystories.py: error:")), r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


def test_download_sample_layout_and_figures(tmp_path):
    r = cli("download", "--dataset=sample", f"--data_root={tmp_path}")
    assert r.returncode == 0, r.stderr
    d = tmp_path / "TinyStories_all_data"
    shards = sorted(os.listdir(d))
    assert len(shards) >= 4 and shards[0] == "data00.jsonl" and all(s.endswith(".jsonl") for s in shards)
    stories, ids = [], []
    for s in shards:
        for line in open(d / s, encoding="utf-8"):
            obj = json.loads(line)
            stories.append(obj["story_zh"])
            ids.append(obj["id"])
    assert len(set(stories)) == len(stories) >= 20000
    assert sum(map(len, stories)) >= 3_000_000
    assert len(set(ids)) == len(ids)
    assert "example story:" in r.stdout and stories[0] in r.stdout
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o777 & ~umask  # not the 0700 of a temporary folder
    mtime = os.path.getmtime(d / shards[0])
    r = cli("download", "--dataset=sample", f"--data_root={tmp_path}")
    assert r.returncode == 0 and "nothing to do" in r.stdout
    assert os.path.getmtime(d / shards[0]) == mtime


# -----------------------------------------------------------------------------
# download against a hub stand-in on 127.0.0.1

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Server:
    """A stand-in for the hub that answers what huggingface_hub asks: HEAD and GET on
    /{datasets/}{repo}/resolve/{revision}/{file} with X-Repo-Commit, ETag (a git sha1 for small
    files; for LFS files the sha256, also as X-Linked-Etag, with X-Linked-Size) and Range requests.
    files[path] = bytes; lfs[path] = False makes a small git file; body[path] serves other bytes
    than those announced (a corrupted transfer); drop_after[path] = n cuts the next GET after n bytes;
    status[path] = code answers with an error. Any other path is also a plain file server (--data_url)."""

    def __init__(self):
        self.files, self.lfs, self.body, self.drop_after, self.status, self.log = {}, {}, {}, {}, {}, []
        self.sent = 0  # body bytes written by GET responses
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def error(self, code, error_code=None):
                self.send_response(code)
                if error_code:
                    self.send_header("X-Error-Code", error_code)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def answer(self, head):
                path = self.path.split("?")[0]
                server.log.append((self.command, path, {k.lower(): v for k, v in self.headers.items()}))
                if path in server.status:
                    return self.error(server.status[path])
                data = server.files.get(path)
                if data is None:
                    known = any(p.split("/resolve/")[0] == path.split("/resolve/")[0] for p in server.files)
                    return self.error(404, "EntryNotFound") if known else self.error(401, "RepoNotFound")
                body = server.body.get(path, data)
                start, status = 0, 200
                rng = self.headers.get("Range")
                if rng and not head:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                self.send_response(status)
                self.send_header("Content-Length", str(len(body) - start))
                self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("X-Repo-Commit", COMMIT)
                if server.lfs.get(path, True):
                    sha = hashlib.sha256(data).hexdigest()
                    self.send_header("ETag", f'"{sha}"')
                    self.send_header("X-Linked-Etag", f'"{sha}"')
                    self.send_header("X-Linked-Size", str(len(data)))
                else:
                    self.send_header("ETag", '"%s"' % hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest())
                self.end_headers()
                if head:
                    return
                out = body[start:]
                cut = server.drop_after.pop(path, None)
                if cut is not None:
                    out = out[:cut]
                    self.close_connection = True
                self.wfile.write(out)
                self.wfile.flush()
                server.sent += len(out)

            def do_HEAD(self):
                self.answer(head=True)

            def do_GET(self):
                self.answer(head=False)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def gets(self, path):
        return [h for m, p, h in self.log if m == "GET" and p == path]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def hub_env(server_url, tmp_path):
    """The hub at server_url, with nothing of this machine's hub settings: token, cache, offline mode."""
    return {"HF_ENDPOINT": server_url, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_OFFLINE": "", "HF_HUB_DISABLE_XET": "1", "HF_HUB_ENABLE_HF_TRANSFER": ""}


def make_tarball(entries):
    """entries: list of (name, bytes) files, or (name, ('symlink'|'hardlink', target))."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            if isinstance(data, tuple):
                info.type = tarfile.SYMTYPE if data[0] == "symlink" else tarfile.LNKTYPE
                info.linkname = data[1]
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def shard_bytes(stories):
    return "".join(json.dumps({"story_zh": s, "story": "english"}, ensure_ascii=False) + "\n"
                   for s in stories).encode()


@pytest.fixture(scope="module")
def tarball(zh_stories):
    files = [(f"data{i:02d}.jsonl", shard_bytes(zh_stories[i * 50:(i + 1) * 50])) for i in range(4)]
    # incompressible padding so the transfer is long enough to cut in the middle
    files.append(("padding.bin", np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()))
    return make_tarball(files)


def leftovers(root):
    """What a download leaves besides the archive and the data: huggingface_hub's own .cache is fine."""
    return [n for n in os.listdir(root) if n.startswith(".") and n != ".cache"]


def test_download_from_hub_mirror_token_and_idempotent(tmp_path, server, tarball, zh_stories):
    server.files[DATASET_PATH] = tarball
    env = {**hub_env(server.url, tmp_path), "HF_TOKEN": "secret"}
    r = cli("download", f"--data_root={tmp_path}", env_extra=env)
    assert r.returncode == 0, r.stderr
    assert {p for _, p, _ in server.log} == {DATASET_PATH}
    assert [m for m, _, _ in server.log].count("GET") == 1
    assert all(h.get("authorization") == "Bearer secret" for _, _, h in server.log)
    d = tmp_path / "TinyStories_all_data"
    assert (d / "data00.jsonl").read_bytes() == shard_bytes(zh_stories[:50])
    assert zh_stories[0] in r.stdout
    assert (tmp_path / "TinyStories_all_data_zh.tar.gz").read_bytes() == tarball
    assert not leftovers(tmp_path)
    n = len(server.log)
    r = cli("download", f"--data_root={tmp_path}", env_extra=env)
    assert r.returncode == 0 and "nothing to do" in r.stdout
    assert len(server.log) == n  # nothing asked the second time


@pytest.fixture(scope="module")
def big_tarball(zh_stories):
    """25 MiB: huggingface_hub writes (and resumes from) whole 10 MiB chunks."""
    pad = np.random.default_rng(1).integers(0, 256, 25 << 20, dtype=np.uint8).tobytes()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for name, data in [("data00.jsonl", shard_bytes(zh_stories[:50])), ("padding.bin", pad)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_download_resumes_cut_transfer_with_range(tmp_path, server, big_tarball):
    """The connection drops after 20 MiB: huggingface_hub asks for the rest with a Range request and
    no byte crosses the wire twice. (It keeps whole 10 MiB chunks: a cut inside one fetches that chunk
    again; and it deletes the partial file when the process ends, so a new run starts over.)"""
    server.files[DATASET_PATH] = big_tarball
    server.drop_after[DATASET_PATH] = 20 << 20
    r = cli("download", f"--data_root={tmp_path}", env_extra=hub_env(server.url, tmp_path))
    assert r.returncode == 0, r.stderr
    gets = server.gets(DATASET_PATH)
    assert len(gets) == 2 and "range" not in gets[0]
    assert gets[1]["range"] == f"bytes={20 << 20}-"
    assert server.sent == len(big_tarball)
    assert (tmp_path / "TinyStories_all_data_zh.tar.gz").read_bytes() == big_tarball
    assert (tmp_path / "TinyStories_all_data" / "data00.jsonl").exists()
    assert not leftovers(tmp_path)


def test_download_refuses_corrupted_body(tmp_path, server, tarball):
    """The body differs from the sha256 the hub announced: refused, deleted, nothing extracted;
    the next run downloads it again."""
    server.files[DATASET_PATH] = tarball
    bad = bytearray(tarball)
    bad[len(bad) // 2] ^= 0xFF
    server.body[DATASET_PATH] = bytes(bad)
    env = hub_env(server.url, tmp_path)
    r = cli("download", f"--data_root={tmp_path}", env_extra=env)
    assert_user_error(r, "sha256 mismatch", "run again")
    assert not (tmp_path / "TinyStories_all_data").exists()
    assert not (tmp_path / "TinyStories_all_data_zh.tar.gz").exists() and not leftovers(tmp_path)
    del server.body[DATASET_PATH]
    r = cli("download", f"--data_root={tmp_path}", env_extra=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "TinyStories_all_data" / "data00.jsonl").exists()


def test_download_hub_errors_are_one_line(tmp_path, server, tarball):
    env = hub_env(server.url, tmp_path)
    server.files["/datasets/adam89/TinyStoriesChinese/resolve/main/README.md"] = b"readme"
    assert_user_error(cli("download", f"--data_root={tmp_path}", env_extra=env), "not found", "404")
    assert_user_error(cli("download_model", f"--out_dir={tmp_path}", env_extra=env), "stories15M.bin", "not found")
    server.files[DATASET_PATH] = tarball
    server.status[DATASET_PATH] = 403
    assert_user_error(cli("download", f"--data_root={tmp_path}", env_extra=env), "access denied", "HF_TOKEN")
    server.status[DATASET_PATH] = 500
    assert_user_error(cli("download", f"--data_root={tmp_path}", env_extra=env), "HTTP 500", "HF_ENDPOINT")
    offline = {**env, "HF_HUB_OFFLINE": "1"}
    assert_user_error(cli("download", f"--data_root={tmp_path}", env_extra=offline), "HF_HUB_OFFLINE")
    dead = hub_env("http://127.0.0.1:9", tmp_path)  # nothing listens on the discard port
    assert_user_error(cli("download", f"--data_root={tmp_path}", env_extra=dead), "cannot reach",
                      "HF_ENDPOINT=https://hf-mirror.com")
    assert not (tmp_path / "TinyStories_all_data").exists() and not leftovers(tmp_path)


def test_download_model(tmp_path, server):
    model = "/adam89/tinyllamas-chinese/resolve/main/stories42M.bin"
    tok = "/adam89/tinyllamas-chinese/resolve/main/tok5000.bin"
    server.files[model] = b"model" * 1000
    server.files[tok] = b"tok" * 100
    server.lfs[tok] = False  # a small file kept in git: its ETag is no sha256
    env = hub_env(server.url, tmp_path)
    r = cli("download_model", "--model=stories42M", f"--out_dir={tmp_path}", env_extra=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "stories42M.bin").read_bytes() == b"model" * 1000
    assert (tmp_path / "tok5000.bin").read_bytes() == b"tok" * 100
    n = len(server.log)
    r = cli("download_model", "--model=stories42M", f"--out_dir={tmp_path}", env_extra=env)
    assert r.returncode == 0 and len(server.log) == n
    assert_user_error(cli("download_model", "--model=stories7B", f"--out_dir={tmp_path}"), "unknown model")


def test_download_data_url_and_sha256(tmp_path, server, big_tarball):
    """--data_url: any host, one plain file; a cut transfer resumes the same way; --sha256 is checked."""
    path = "/files/data.tar.gz"
    server.files[path] = big_tarball
    server.drop_after[path] = 10 << 20
    r = cli("download", f"--data_root={tmp_path}", f"--data_url={server.url}{path}",
            f"--sha256={hashlib.sha256(big_tarball).hexdigest()}")
    assert r.returncode == 0, r.stderr
    assert server.gets(path)[1]["range"] == f"bytes={10 << 20}-" and server.sent == len(big_tarball)
    assert (tmp_path / "data.tar.gz").read_bytes() == big_tarball
    assert (tmp_path / "TinyStories_all_data" / "data00.jsonl").exists()
    root = tmp_path / "b"
    r = cli("download", f"--data_root={root}", f"--data_url={server.url}{path}", "--sha256=" + "0" * 64)
    assert_user_error(r, "sha256 mismatch")
    assert os.listdir(root) == []
    assert_user_error(cli("download", f"--data_root={root}", f"--data_url={server.url}/none.tar.gz"), "not found")


def test_download_corrupt_archive(tmp_path, server, tarball):
    server.files["/cut.tar.gz"] = tarball[:len(tarball) // 3]  # announced as complete, but truncated
    server.files["/junk.tar.gz"] = b"this is not a tarball" * 100
    for name in ("cut", "junk"):
        r = cli("download", f"--data_root={tmp_path}", f"--data_url={server.url}/{name}.tar.gz")
        assert_user_error(r, "corrupt or truncated")
        assert not (tmp_path / "TinyStories_all_data").exists()
        assert not leftovers(tmp_path)


@pytest.mark.parametrize("entry", [("../evil.jsonl", b"{}\n"),
                                   ("data/../../evil.jsonl", b"{}\n"), ("link.jsonl", ("symlink", "/etc/passwd")),
                                   ("up.jsonl", ("symlink", "../evil.jsonl")),
                                   ("hard.jsonl", ("hardlink", "../../etc/passwd"))])
def test_download_refuses_unsafe_entries(tmp_path, server, entry):
    server.files["/bad.tar.gz"] = make_tarball([("data00.jsonl", shard_bytes(["故事"])), entry])
    root = tmp_path / "root"
    r = cli("download", f"--data_root={root}", f"--data_url={server.url}/bad.tar.gz")
    assert_user_error(r, "refusing")
    assert not (root / "TinyStories_all_data").exists()
    assert not (tmp_path / "evil.jsonl").exists() and not leftovers(root)


def test_download_keeps_absolute_entries_inside(tmp_path, server):
    """tarfile's "data" filter strips the leading "/" of an absolute name: it lands inside the folder."""
    server.files["/abs.tar.gz"] = make_tarball([("data00.jsonl", shard_bytes(["故事"])),
                                                (f"{tmp_path}/evil.jsonl", shard_bytes(["坏"]))])
    r = cli("download", f"--data_root={tmp_path / 'root'}", f"--data_url={server.url}/abs.tar.gz")
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "evil.jsonl").exists()
    assert (tmp_path / "root" / "TinyStories_all_data" / str(tmp_path).lstrip("/") / "evil.jsonl").exists()


# the same refusals with tarfile's "data" filter and without it (Python before 3.11.4 / 3.10.12)
FILTERS = [pytest.param(True, id="data_filter", marks=pytest.mark.skipif(
    not hasattr(tarfile, "data_filter"), reason="this Python's tarfile has no data filter")),
    pytest.param(False, id="own_checks")]


def tar_of(members):
    """members: (TarInfo fields dict, bytes or None) -> .tar.gz bytes, for entries make_tarball cannot say."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for fields, data in members:
            info = tarfile.TarInfo(fields.pop("name"))
            for k, v in fields.items():
                setattr(info, k, v)
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def extract(tmp_path, monkeypatch, use_filter, archive_bytes, **limits):
    monkeypatch.setattr(tinystories, "TAR_DATA_FILTER", use_filter)
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(archive_bytes)
    out = tmp_path / "root" / "TinyStories_all_data"
    tinystories.safe_extract(str(archive), str(out), **limits)
    return out


SHARD = ({"name": "data00.jsonl"}, "{\"story_zh\": \"故事\"}\n".encode())
HOSTILE = {
    "dotdot": [({"name": "../evil.jsonl"}, b"{}\n")],
    "dotdot_inside": [({"name": "data/../../evil.jsonl"}, b"{}\n")],
    "symlink_absolute": [({"name": "link.jsonl", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}, None)],
    "symlink_up": [({"name": "up.jsonl", "type": tarfile.SYMTYPE, "linkname": "../evil.jsonl"}, None)],
    # a link to "." is harmless alone; a name through it then climbs out of the folder on disk
    "symlink_chain": [({"name": "here", "type": tarfile.SYMTYPE, "linkname": "."}, None),
                      ({"name": "here/x/../../evil.jsonl"}, b"{}\n")],
    "link_through_link": [({"name": "here", "type": tarfile.SYMTYPE, "linkname": "."}, None),
                          ({"name": "up", "type": tarfile.SYMTYPE, "linkname": "here/.."}, None)],
    "hardlink_out": [({"name": "hard.jsonl", "type": tarfile.LNKTYPE, "linkname": "../../etc/passwd"}, None)],
    "char_device": [({"name": "null", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, None)],
    "block_device": [({"name": "sda", "type": tarfile.BLKTYPE, "devmajor": 8, "devminor": 0}, None)],
    "fifo": [({"name": "pipe", "type": tarfile.FIFOTYPE}, None)],
}


@pytest.mark.parametrize("use_filter", FILTERS)
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_extract_refuses_hostile_entries_with_and_without_filter(tmp_path, monkeypatch, use_filter, case):
    members = [(dict(SHARD[0]), SHARD[1])] + [(dict(f), d) for f, d in HOSTILE[case]]
    with pytest.raises(tinystories.UserError) as e:
        extract(tmp_path, monkeypatch, use_filter, tar_of(members))
    assert "refusing unsafe entry" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "root" / "TinyStories_all_data").exists()
    assert not (tmp_path / "evil.jsonl").exists() and os.listdir(tmp_path / "root") == []


@pytest.mark.parametrize("use_filter", FILTERS)
def test_extract_modes_links_and_absolute_names(tmp_path, monkeypatch, use_filter):
    """setuid/setgid/sticky and group/other write bits dropped, owner read/write kept, an absolute
    name lands inside, links within the folder kept; folders get the umask's mode."""
    members = [(dict(SHARD[0]), SHARD[1]),
               ({"name": "sub/suid.jsonl", "mode": 0o4777}, b"{}\n"),
               ({"name": "sub/sgid.jsonl", "mode": 0o2640}, b"{}\n"),
               ({"name": "sub/sticky.jsonl", "mode": 0o1666}, b"{}\n"),
               ({"name": "sub/noread.jsonl", "mode": 0o000}, b"{}\n"),
               ({"name": "sub", "type": tarfile.DIRTYPE, "mode": 0o7777}, None),
               ({"name": "/abs/inside.jsonl"}, b"{}\n"),
               ({"name": "sub/link.jsonl", "type": tarfile.SYMTYPE, "linkname": "../data00.jsonl"}, None),
               ({"name": "hard.jsonl", "type": tarfile.LNKTYPE, "linkname": "data00.jsonl"}, None)]
    out = extract(tmp_path, monkeypatch, use_filter, tar_of(members))
    mode = lambda p: stat.S_IMODE(os.lstat(out / p).st_mode)
    assert (mode("sub/suid.jsonl"), mode("sub/sgid.jsonl"), mode("sub/sticky.jsonl"), mode("sub/noread.jsonl")) \
        == (0o755, 0o640, 0o644, 0o600)
    umask = os.umask(0o022)
    os.umask(umask)
    assert mode(".") == mode("sub") == mode("abs") == 0o777 & ~umask
    assert (out / "abs" / "inside.jsonl").exists()
    assert (out / "sub" / "link.jsonl").read_bytes() == (out / "hard.jsonl").read_bytes() == SHARD[1]
    assert os.readlink(out / "sub" / "link.jsonl") == "../data00.jsonl"


def sparse_bomb(tmp_path, gb=2):
    """A .tar.gz of a few KB holding a sparse file of gb GB (GNU tar's --sparse)."""
    src = tmp_path / "bomb"
    src.mkdir()
    with open(src / "data00.jsonl", "wb") as f:
        f.write(b'{"story_zh": "x"}\n')
        f.truncate(gb << 30)
    out = tmp_path / "bomb.tar.gz"
    subprocess.run(["tar", "--sparse", "-czf", str(out), "-C", str(src), "data00.jsonl"], check=True)
    os.remove(src / "data00.jsonl")
    return out.read_bytes()


def test_download_refuses_archive_over_limits(tmp_path, server):
    """A tar bomb (a few KB unpacking to 2 GB), too many entries, too much in all: refused before a
    byte is written, in one line naming the flag that raises the limit."""
    bomb = sparse_bomb(tmp_path)
    assert len(bomb) < 100_000
    server.files["/bomb.tar.gz"] = bomb
    many = [(f"d/{i}.jsonl", b"{}\n") for i in range(30)]
    server.files["/many.tar.gz"] = make_tarball(many)
    server.files["/big.tar.gz"] = make_tarball([("a.jsonl", b"{}\n" * 300_000), ("b.jsonl", b"{}\n" * 300_000)])
    for name, flags, words in [("bomb", [], ["2048 MB", "--max_file_mb=1024"]),
                               ("many", ["--max_files=10"], ["more than 10 entries", "--max_files"]),
                               ("big", ["--max_total_mb=1"], ["--max_total_mb=1"])]:
        root = tmp_path / name
        r = cli("download", f"--data_root={root}", f"--data_url={server.url}/{name}.tar.gz", *flags)
        assert_user_error(r, *words)
        assert not (root / "TinyStories_all_data").exists() and not leftovers(root)
    r = cli("download", f"--data_root={tmp_path / 'many'}", f"--data_url={server.url}/many.tar.gz", "--max_files=31")
    assert r.returncode == 0, r.stderr
    assert_user_error(cli("download", "--max_files=0"), "--max_files must be >= 1")


def test_download_full_disk_keeps_the_archive(tmp_path, server, zh_stories):
    """A verified archive that does not fit: "no space left", the archive kept (not "corrupt,
    delete it"), and nothing half-extracted."""
    body = make_tarball([(f"data{i:02d}.jsonl", shard_bytes(zh_stories[:20]) * 100) for i in range(2)])
    assert len(body) < 200_000
    server.files["/d.tar.gz"] = body
    with small_disk(tmp_path / "disk", 400) as (disk, preexec):
        r = cli("download", f"--data_root={disk}", f"--data_url={server.url}/d.tar.gz",
                f"--sha256={hashlib.sha256(body).hexdigest()}", preexec_fn=preexec)
        assert_user_error(r, f"no space left on {disk}", "need ~")
        assert "corrupt" not in r.stderr and "delete" not in r.stderr
        assert open(os.path.join(disk, "d.tar.gz"), "rb").read() == body
        assert not os.path.exists(os.path.join(disk, "TinyStories_all_data")) and not leftovers(disk)


def test_download_killed_mid_extraction_leaves_nothing_after_rerun(tmp_path, server, big_tarball):
    """kill -9 while extracting leaves .extract-XXXX/; the next run removes it, but not the folder
    of a run still going (it holds the lock on that folder's .lock)."""
    import fcntl
    server.files["/big.tar.gz"] = big_tarball
    cmd = [sys.executable, SCRIPT, "download", f"--data_root={tmp_path}", f"--data_url={server.url}/big.tar.gz"]
    kill_when(cmd, "extracting")
    stale = [n for n in os.listdir(tmp_path) if n.startswith(".extract-")]
    assert stale, os.listdir(tmp_path)
    busy = tmp_path / ".extract-busy"
    busy.mkdir()
    with open(busy / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        (tmp_path / ".sample-old").mkdir()
        open(tmp_path / ".sample-old" / ".lock", "w").close()
        r = cli("download", f"--data_root={tmp_path}", f"--data_url={server.url}/big.tar.gz")
        assert r.returncode == 0, r.stderr
        assert sorted(leftovers(tmp_path)) == [".extract-busy"]
    assert (tmp_path / "TinyStories_all_data" / "data00.jsonl").exists()


def test_data_url_errors_name_its_host(tmp_path):
    r = cli("download", f"--data_root={tmp_path}", "--data_url=http://127.0.0.1:9/data.tar.gz",
            env_extra={"HF_HUB_DISABLE_TELEMETRY": "1"})
    assert_user_error(r, "cannot reach http://127.0.0.1:9 ")
    assert "huggingface" not in r.stderr and "HF_ENDPOINT" not in r.stderr


# -----------------------------------------------------------------------------
# train_vocab and pretokenize

def decode_shard(path, sp):
    ids = np.fromfile(path, dtype=np.uint16).tolist()
    stories, cur = [], None
    for t in ids:
        if t == 1:
            assert cur is None
            cur = []
        elif t == 2:
            stories.append(sp.decode(cur))
            cur = None
        else:
            cur.append(t)
    assert cur is None  # every story ends with EOS
    return stories


def test_train_vocab_pretokenize_round_trip(tmp_path, zh_stories, libbpe):
    data = tmp_path / "data" / "TinyStories_all_data"
    data.mkdir(parents=True)
    parts = [zh_stories[i * 300:(i + 1) * 300] for i in range(4)]
    for i, p in enumerate(parts):
        (data / f"data{i:02d}.jsonl").write_bytes(shard_bytes(p))
    root = tmp_path / "data"
    r = cli("train_vocab", "--vocab_size=700", f"--data_root={root}")
    assert r.returncode == 0, r.stderr
    assert (root / "tok700.model").exists() and (root / "tok700.vocab").exists()
    r = cli("pretokenize", "--vocab_size=700", f"--data_root={root}")
    assert r.returncode == 0, r.stderr
    sp = spm.SentencePieceProcessor(model_file=str(root / "tok700.model"))
    shards = sorted(os.listdir(root / "tok700"))
    assert shards == [f"data{i:02d}.bin" for i in range(4)]
    for name, p in zip(shards, parts):
        assert decode_shard(root / "tok700" / name, sp) == p
        ids = np.fromfile(root / "tok700" / name, dtype=np.uint16)
        assert ids.tolist() == [t for story in p for t in [1] + sp.encode(story) + [2]]
    assert "data00.bin is the validation split" in r.stdout and "bpe.c" in r.stdout
    # sentencepiece itself writes the same bytes (one process, then the default pool of processes)
    fast = {name: (root / "tok700" / name).read_bytes() for name in shards}
    for extra in (["--encoder=sentencepiece", "--num_workers=1"], ["--encoder=sentencepiece"]):
        r = cli("pretokenize", "--vocab_size=700", f"--data_root={root}", *extra)
        assert r.returncode == 0 and "sentencepiece" in r.stdout, r.stderr
        assert {name: (root / "tok700" / name).read_bytes() for name in shards} == fast


def test_pretokenize_mixed_formats_and_broken_input(tmp_path, sp_model, zh_stories):
    root = tmp_path / "root"
    root.mkdir()
    (root / "tok512.model").write_bytes(open(sp_model, "rb").read())
    src = tmp_path / "mine"
    (src / "sub").mkdir(parents=True)
    s = zh_stories
    lines = [json.dumps({"story_zh": s[0]}, ensure_ascii=False).encode(),
             b'{"story_zh": "broken',  # malformed JSON
             json.dumps({"text_zh": s[1]}, ensure_ascii=False).encode(),
             b'{"story_zh": "\xff\xfe bad utf-8"}',  # not UTF-8
             b'{"story_zh": "lone \\ud800 surrogate"}',  # valid JSON, but no valid Unicode
             json.dumps({"other": 1}).encode(),  # no text field
             b"",
             json.dumps({"content": s[2]}, ensure_ascii=False).encode(),
             json.dumps({"text": s[3], "id": 7}, ensure_ascii=False).encode()]
    (src / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (src / "b.json").write_text(json.dumps([{"story": s[4]}, {"story": s[5]}, 3], ensure_ascii=False), encoding="utf-8")
    (src / "c.txt").write_text(s[6] + "\n", encoding="utf-8")
    (src / "sub" / "d.md").write_text("# 标题\n\n" + s[7], encoding="utf-8")
    (src / "e.txt").write_bytes(b"\xc3\x28 invalid")
    clean = [json.dumps({"story_zh": s[8]}, ensure_ascii=False), '{"story_zh": "\\uDBFF alone"}', json.dumps({"story_zh": s[9]})]
    (src / "g.jsonl").write_text("\n".join(clean) + "\n", encoding="utf-8")  # parsed in one piece
    (src / "f.json").write_text("[{", encoding="utf-8")
    (src / "ignored.csv").write_text("x,y", encoding="utf-8")
    r = cli("pretokenize", "--vocab_size=512", f"--data_root={root}", f"--data_dir={src}")
    assert r.returncode == 0, r.stderr
    assert "skipped 8 malformed" in r.stdout, r.stdout
    sp = spm.SentencePieceProcessor(model_file=sp_model)
    out = root / "tok512"
    assert sorted(os.listdir(out)) == ["a.bin", "b.bin", "c.bin", "e.bin", "f.bin", "g.bin", "sub_d.bin"]
    assert decode_shard(out / "g.bin", sp) == [s[8], s[9]]
    assert decode_shard(out / "a.bin", sp) == s[:4]
    assert decode_shard(out / "b.bin", sp) == s[4:6]
    assert decode_shard(out / "c.bin", sp) == [s[6]]
    assert decode_shard(out / "sub_d.bin", sp) == ["# 标题\n\n" + s[7]]
    assert os.path.getsize(out / "e.bin") == 0
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]


def test_bad_inputs_one_line_errors(tmp_path, sp_model):
    (tmp_path / "tok512.model").write_bytes(open(sp_model, "rb").read())
    (tmp_path / "tok600.model").write_bytes(b"garbage")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_user_error(cli("pretokenize", "--vocab_size=70000", f"--data_root={tmp_path}"), "65535")
    assert_user_error(cli("train_vocab", "--vocab_size=70000", f"--data_root={tmp_path}"), "65535")
    assert_user_error(cli("pretokenize", "--vocab_size=4096", f"--data_root={tmp_path}"), "train_vocab")
    assert_user_error(cli("pretokenize", "--vocab_size=600", f"--data_root={tmp_path}"), "not a sentencepiece")
    assert_user_error(cli("pretokenize", "--vocab_size=512", f"--data_root={tmp_path}", f"--data_dir={empty}"), "no .jsonl")
    assert_user_error(cli("train_vocab", "--vocab_size=100", f"--data_root={tmp_path}", f"--data_dir={empty}"))
    assert_user_error(cli("train_vocab", "--vocab_size=5000", f"--data_root={tmp_path}"), "download")
    assert_user_error(cli("bogus_stage"))
    assert_user_error(cli("pretokenize", "--vocab_size=512", f"--data_root={tmp_path}", "--encoder=fast"))
    spm.SentencePieceTrainer.train(sentence_iterator=iter(generate_stories(200)), model_prefix=str(tmp_path / "tok700"),
                                   model_type="unigram", vocab_size=700, minloglevel=2)
    data = tmp_path / "TinyStories_all_data"
    data.mkdir()
    (data / "a.jsonl").write_text('{"story_zh": "你好"}\n', encoding="utf-8")
    assert_user_error(cli("pretokenize", "--vocab_size=700", f"--data_root={tmp_path}", "--encoder=bpe"), "not a BPE")
    r = cli("train_vocab", "--vocab_size=abc")
    assert_user_error(r, "--vocab_size")
    assert r.stderr.strip().count("\n") == 0, r.stderr  # argparse's usage text is not repeated
    # used to train silently on a single story, or to report a file as holding no files
    assert_user_error(cli("train_vocab", "--vocab_size=512", f"--data_root={tmp_path}", "--max_chars=0"), "max_chars")
    assert_user_error(cli("train_vocab", "--vocab_size=512", f"--data_root={tmp_path}",
                          f"--data_dir={data / 'a.jsonl'}"), "not a folder")
    assert_user_error(cli("pretokenize", "--vocab_size=512", f"--data_root={tmp_path}", "--num_workers=-2"), "num_workers")


# -----------------------------------------------------------------------------
# BatchStream

@pytest.fixture(scope="module")
def bin_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("bins")
    (root / "tok64").mkdir()
    rng = np.random.default_rng(0)
    for i, n in enumerate([500, 900, 700, 40, 20]):  # the last one is shorter than a window
        rng.integers(0, 64, n).astype(np.uint16).tofile(root / "tok64" / f"s{i}.bin")
    return str(root)


def stream(root, split="train", seed=1337, rank=0, T=32):
    return BatchStream(split, batch_size=4, max_seq_len=T, vocab_size=64, vocab_source="custom",
                       data_root=root, seed=seed, rank=rank)


def test_batchstream_resume_is_exact(bin_root, tmp_path):
    a = stream(bin_root)
    for _ in range(7):
        a.next_batch("cpu")
    torch.save({"data": a.state_dict()}, tmp_path / "s.pt")
    expect = [a.next_batch("cpu") for _ in range(30)]  # crosses shard and epoch boundaries
    b = stream(bin_root)
    b.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True)["data"])
    for x, y in expect:
        bx, by = b.next_batch("cpu")
        assert torch.equal(x, bx) and torch.equal(y, by)
    assert b.state_dict() == a.state_dict() and a.epoch >= 1


def test_batchstream_windows_seeds_and_ranks(bin_root):
    a = stream(bin_root)
    x, y = a.next_batch("cpu")
    assert x.shape == y.shape == (4, 32) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    data = {n: np.fromfile(os.path.join(bin_root, "tok64", n), dtype=np.uint16) for n in ["s1.bin", "s2.bin", "s3.bin"]}
    # one epoch visits every non-overlapping window of the train shards exactly once
    seen = []
    b = stream(bin_root)
    n_windows = sum((len(d) - 1) // 32 for d in data.values())
    for _ in range(n_windows // 4):
        bx, by = b.next_batch("cpu")
        seen += [tuple(r) for r in torch.cat([bx, by[:, -1:]], 1).tolist()]
    want = [tuple(d[i * 32:i * 32 + 33].tolist()) for d in data.values() for i in range((len(d) - 1) // 32)]
    assert set(seen) <= set(want) and len(set(seen)) == len(seen) > len(want) - 4
    assert not torch.equal(stream(bin_root, rank=1).next_batch("cpu")[0], x)
    assert not torch.equal(stream(bin_root, seed=1).next_batch("cpu")[0], x)
    assert torch.equal(stream(bin_root).next_batch("cpu")[0], x)
    v = stream(bin_root, split="val").next_batch("cpu")[0]
    s0 = np.fromfile(os.path.join(bin_root, "tok64", "s0.bin"), dtype=np.uint16)
    assert all(any(np.array_equal(s0[i * 32:i * 32 + 32], r) for i in range(15)) for r in v.numpy())


def test_batchstream_errors(bin_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="pretokenize"):
        stream(str(tmp_path))
    with pytest.raises(ValueError, match="vocab_source"):
        BatchStream("train", 4, 32, 64, "bogus", data_root=bin_root)
    with pytest.raises(ValueError, match="vocab_size"):
        (tmp_path / "tok8").mkdir()
        for i in range(2):
            np.full(100, 9, dtype=np.uint16).tofile(tmp_path / "tok8" / f"s{i}.bin")
        BatchStream("train", 2, 8, 8, "custom", data_root=str(tmp_path)).next_batch("cpu")


def test_deep_json_and_special_files_in_the_input(tmp_path, sp_model, zh_stories):
    # '[' * 100000 ended pretokenize and train_vocab with a 55-line RecursionError traceback
    root = tmp_path / "root"
    root.mkdir()
    (root / "tok512.model").write_bytes(open(sp_model, "rb").read())
    src = tmp_path / "src"
    src.mkdir()
    deep = b"[" * 100000 + b"]" * 100000
    (src / "a.jsonl").write_bytes(json.dumps({"story_zh": zh_stories[0]}, ensure_ascii=False).encode() + b"\n" + deep + b"\n")
    (src / "b.json").write_bytes(deep)
    r = cli("pretokenize", "--vocab_size=512", f"--data_root={root}", f"--data_dir={src}")
    assert r.returncode == 0 and "skipped 2 malformed" in r.stdout, r.stderr
    r = cli("train_vocab", "--vocab_size=300", f"--data_root={root}", f"--data_dir={src}", "--max_chars=100000")
    assert "Traceback" not in r.stderr and "skipped 2 malformed" in r.stdout, r.stderr
    # a FIFO among the inputs made the reader wait forever for a writer
    os.mkfifo(src / "c.jsonl")
    for stage in ("pretokenize", "train_vocab"):
        assert_user_error(cli(stage, "--vocab_size=512", f"--data_root={root}", f"--data_dir={src}", timeout=60),
                          "c.jsonl is not a regular file")


# -----------------------------------------------------------------------------
# faults: a full disk, kill -9, oversized documents

def stories_dir(tmp_path, zh_stories, n_files, per_file):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(n_files):
        part = [zh_stories[(i * per_file + j) % len(zh_stories)] for j in range(per_file)]
        (src / f"d{i:02d}.jsonl").write_bytes(shard_bytes(part))
    return src


@pytest.mark.parametrize("mode", ["rlimit", "tmpfs"])
def test_pretokenize_on_a_full_disk_is_one_line(tmp_path, sp_model, zh_stories, mode):
    from faults import small_disk
    src = stories_dir(tmp_path, zh_stories, 2, 1000)  # shards of ~200 KB
    with small_disk(tmp_path / "disk", 64, mode) as (root, preexec):
        with open(os.path.join(root, "tok512.model"), "wb") as f:
            f.write(open(sp_model, "rb").read())
        r = subprocess.run([sys.executable, SCRIPT, "pretokenize", "--vocab_size=512", f"--data_root={root}",
                            f"--data_dir={src}", "--num_workers=2", "--encoder=sentencepiece"],
                           capture_output=True, text=True, preexec_fn=preexec, env=dict(os.environ, OMP_NUM_THREADS="1"))
        # it said "... requested and ... written"
        assert_user_error(r)  # (above it: tqdm's bar)
        assert r.stderr.strip().splitlines()[-1].startswith(f"error: no space left on {root}/tok512/d0"), r.stderr
        assert ".bin (need ~0." in r.stderr
        assert os.listdir(os.path.join(root, "tok512")) == []


def test_kill_9_of_pretokenize_takes_its_workers_along(tmp_path, sp_model, zh_stories):
    from faults import kill_when, survivors, tagged
    root = tmp_path / "root"
    root.mkdir()
    (root / "tok512.model").write_bytes(open(sp_model, "rb").read())
    src = stories_dir(tmp_path, zh_stories, 12, 3000)
    env, tag = tagged(dict(os.environ, OMP_NUM_THREADS="1"))
    cmd = [sys.executable, SCRIPT, "pretokenize", "--vocab_size=512", f"--data_root={root}", f"--data_dir={src}",
           "--num_workers=2", "--encoder=sentencepiece"]
    # tqdm's first update with a shard back and at least 6 to go: the workers are at work
    kill_when(cmd, re.compile(rb"\| [1-6]/12 \["), env=env)
    # they used to live on with parent pid 1, blocked on the task pipe for good
    left = survivors(tag)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == []
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)  # a rerun finishes and cleans up
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(root / "tok512")) == [f"d{i:02d}.bin" for i in range(12)]
    assert survivors(tag) == []


def test_oversized_documents_are_skipped_unread(tmp_path, sp_model, zh_stories):
    from faults import memory_limit
    src = stories_dir(tmp_path, zh_stories, 2, 300)
    # a tar bomb's payload: one sparse line of 1.25 GB, which used to be read whole (and then joined)
    with open(src / "bomb.jsonl", "wb") as f:
        f.write(b'{"story_zh": "' + "开头".encode() + b'"}\n')
        f.truncate(5 << 28)
        f.seek(0, 2)
        f.write(b"\n" + shard_bytes(zh_stories[:1]))
    (src / "big.txt").write_bytes(("很长" * (1 << 19)).encode())  # 3 MB of text in one document
    (src / "fine.jsonl").write_bytes(shard_bytes(["不长"]) + b'{"story_zh": "' + b"x" * (2 << 20) + b'"}\n')
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    r = subprocess.run([sys.executable, SCRIPT, "train_vocab", "--vocab_size=300", f"--data_root={tmp_path}",
                        f"--data_dir={src}", "--max_doc_mb=1"], capture_output=True, text=True, env=env,
                       preexec_fn=memory_limit(1024), timeout=120)
    assert r.returncode == 0, r.stderr
    assert "skipped 3 lines or files over 1 MB (raise the bound with --max_doc_mb)" in r.stdout, r.stdout
    root = tmp_path / "root"
    root.mkdir()
    (root / "tok512.model").write_bytes(open(sp_model, "rb").read())
    r = subprocess.run([sys.executable, SCRIPT, "pretokenize", "--vocab_size=512", f"--data_root={root}",
                        f"--data_dir={src}", "--max_doc_mb=1", "--num_workers=1"], capture_output=True, text=True,
                       env=env, preexec_fn=memory_limit(1024), timeout=120)
    assert r.returncode == 0, r.stderr
    assert "skipped 3 lines or files over 1 MB" in r.stdout, r.stdout
    sp = spm.SentencePieceProcessor(model_file=sp_model)
    assert decode_shard(root / "tok512" / "bomb.bin", sp) == ["开头", zh_stories[0]]  # the lines around it stay
    assert decode_shard(root / "tok512" / "fine.bin", sp) == ["不长"]
    assert os.path.getsize(root / "tok512" / "big.bin") == 0
    r = subprocess.run([sys.executable, SCRIPT, "pretokenize", "--vocab_size=512", f"--data_root={root}",
                        f"--data_dir={src}", "--max_doc_mb=4", "--num_workers=1"], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "skipped 1 lines or files over 4 MB" in r.stdout, r.stdout + r.stderr
