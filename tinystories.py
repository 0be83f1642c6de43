"""
Download, tokenize and stream the Chinese TinyStories dataset.

    python3 tinystories.py download                     # the real dataset from the hub (~1G chars)
    python3 tinystories.py download --dataset=sample    # offline sample corpus, generated here
    python3 tinystories.py download_model --model=stories15M
    python3 tinystories.py train_vocab --vocab_size=5000
    python3 tinystories.py pretokenize --vocab_size=5000

Every stage takes --data_root (default "data"). train_vocab and pretokenize also take --data_dir,
a folder of your own .jsonl / .json / .txt / .md files. Layout under data_root:
    TinyStories_all_data/*.jsonl   raw shards (field story_zh), the first one is the validation split
    tok{N}.model, tok{N}.vocab     the sentencepiece vocabulary
    tok{N}/*.bin                   pretokenized shards: uint16, each story [BOS] + tokens + [EOS]
train.py streams batches with BatchStream (the original's Task.iter_batches, with its state saved in
the checkpoint so a resumed run continues the data where it stopped).
"""

import collections
import copy
import errno
import glob
import hashlib
import itertools
import json
import multiprocessing
import os
import re
import shutil
import signal
import stat
import sys
import tarfile
import tempfile
import threading
import time
import zlib
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np

from errors import UserError, arg_parser, die, first_line, interrupted
from fileio import write_atomic
from storygen import generate_stories

DATA_CACHE_DIR = "data"
HF_ENDPOINT = "https://huggingface.co"
DATASET_REPO = "adam89/TinyStoriesChinese"
DATASET_FILE = "TinyStories_all_data_zh.tar.gz"
MODEL_REPO = "adam89/tinyllamas-chinese"
MODELS = ["stories15M", "stories42M", "stories110M"]
MODEL_TOKENIZER = "tok5000.bin"
TEXT_FIELDS = ["story_zh", "text_zh", "story", "text", "content"]



# -----------------------------------------------------------------------------
# the vocabulary: sentencepiece BPE with settings for Chinese

def _fit_characters(texts, vocab_size):
    """Chinese has thousands of characters; a small vocabulary cannot hold them all next to the 256 byte
    pieces and 3 specials. Keep the most frequent characters that fit (leaving a quarter of the room
    for merged pieces) and cut the rarest out of the training text, so they become byte tokens."""
    counts = collections.Counter()
    for t in texts:
        counts.update(t)
    room = (vocab_size - 259) * 3 // 4
    if room <= 0:
        raise UserError(f"vocab_size={vocab_size} is too small: 256 byte pieces and 3 specials need 259")
    if len(counts) <= room:
        return texts
    rare = [ch for ch, _ in counts.most_common()[room:]]
    cut = re.compile("[" + "".join(re.escape(ch) for ch in rare) + "]+")
    return [piece for t in texts for piece in cut.split(t) if piece.strip()]


def train_sp_model(texts, prefix, vocab_size, num_threads=None, quiet=False, **overrides):
    """Train a sentencepiece BPE model on a list of strings; writes {prefix}.model and {prefix}.vocab.
    The one place where the project's tokenizer settings live (train_vocab and the tests use it);
    overrides replace some of them (the tests of bpe.c try other normalizer settings)."""
    import sentencepiece as spm
    if vocab_size > 65535:
        raise UserError(f"vocab_size={vocab_size} does not fit in the uint16 shards (max 65535)")
    texts = _fit_characters([t for t in texts if t.strip()], vocab_size)
    if not texts:
        raise UserError("no text to train the vocabulary on")
    settings = dict(
        model_type="bpe",
        vocab_size=vocab_size,
        character_coverage=0.9995,  # the rarest characters go to byte tokens
        num_threads=num_threads or min(2, os.cpu_count() or 1),
        split_digits=True,
        allow_whitespace_only_pieces=True,
        byte_fallback=True,
        unk_surface=r" \342\201\207 ",
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,  # keep the text as it is, so decode(encode(s)) == s
        max_sentence_length=1 << 16,
        minloglevel=2 if quiet else 1,  # warnings only: its per-merge log runs to thousands of lines
    )
    settings.update(overrides)
    try:
        spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_prefix=prefix, **settings)
    except RuntimeError as e:
        raise UserError(f"sentencepiece training failed: {first_line(e)}") from None
    return prefix + ".model"


# -----------------------------------------------------------------------------
# download: the real dataset and the published models through huggingface_hub, the sample corpus

SAMPLE_STORIES = 25000
SAMPLE_SHARDS = 10
MIRROR_HINT = "set HF_ENDPOINT=https://hf-mirror.com to use a mirror"


def hub_endpoint():
    """The hub or a mirror (users in mainland China set HF_ENDPOINT=https://hf-mirror.com)."""
    return os.environ.get("HF_ENDPOINT", HF_ENDPOINT).rstrip("/")


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_sha256(path, want, source):
    """huggingface_hub checks the size only: compare the content with the sha256 the server vouches
    for, and delete a file that does not match (the next run downloads it again)."""
    got = sha256_of(path)
    if got != want.lower():
        os.remove(path)
        raise UserError(f"{source}: sha256 mismatch (got {got}, expected {want}); the download was deleted, run again")


def _hub_errors(*names):
    """The huggingface_hub error classes of these names that the installed version has (0.36 lacks
    RemoteEntryNotFoundError, later versions may drop others): a tuple for isinstance."""
    from huggingface_hub import errors
    return tuple(c for c in (getattr(errors, n, None) for n in names) if isinstance(c, type))


def _http_errors():
    """(transport errors, any HTTP error) of the HTTP client huggingface_hub uses: httpx2 from 1.0 on,
    requests before."""
    transport, anything = [], []
    try:
        import httpx2
        transport.append(httpx2.TransportError)
        anything.append(httpx2.HTTPError)
    except ImportError:
        pass
    try:
        import requests
        transport += [requests.ConnectionError, requests.Timeout]
        anything.append(requests.RequestException)
    except ImportError:
        pass
    return tuple(transport), tuple(anything)


def _cut_short():
    """The error of a body cut short that huggingface_hub 0.x (on requests) does not retry itself;
    later versions resume on their own."""
    try:
        import requests
        return (requests.exceptions.ChunkedEncodingError,)
    except ImportError:
        return ()


RETRIES = 5


def _download_error(e, what, host=None):
    """huggingface_hub's and its HTTP client's exceptions -> one line saying what to do. host: the
    server asked (the hub or its mirror when None); the mirror hints are for the hub only."""
    transport, _ = _http_errors()
    hint = "" if host else f", or {MIRROR_HINT}"
    status = getattr(getattr(e, "response", None), "status_code", None)
    if isinstance(e, _hub_errors("GatedRepoError")) or status == 403:
        return UserError(f"{what}: access denied (HTTP {status}); set HF_TOKEN if the repo needs a login")
    if isinstance(e, _hub_errors("RepositoryNotFoundError", "RevisionNotFoundError", "RemoteEntryNotFoundError",
                                 "EntryNotFoundError")) or status == 404:
        # the hub answers 401 for a repo that does not exist or is private
        return UserError(f"{what} not found (HTTP {status})" + ("" if host else "; set HF_TOKEN if the repo is private"))
    offline = os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0")
    if isinstance(e, _hub_errors("OfflineModeIsEnabled")) or (offline and isinstance(e, _hub_errors("LocalEntryNotFoundError"))):
        return UserError(f"{what}: HF_HUB_OFFLINE is set and the file is not downloaded yet")
    if isinstance(e, transport + _hub_errors("LocalEntryNotFoundError", "FileMetadataError")):
        return UserError(f"cannot reach {host or hub_endpoint()} for {what} (offline?); run again to retry{hint}")
    if isinstance(e, _hub_errors("HfHubHTTPError")) or status:
        return UserError(f"{what}: HTTP {status}; run again{hint}")
    return UserError(f"{what}: {first_line(e)}; run again to retry")


def hub_download(repo_id, filename, local_dir, repo_type=None):
    """Fetch one file of a hub repo into local_dir/filename with huggingface_hub (HF_ENDPOINT mirrors,
    HF_TOKEN, retries that resume with a Range request, hf_transfer/Xet when installed, tqdm progress).
    Files the hub stores in LFS are also checked against their sha256."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
    endpoint = hub_endpoint()
    what = f"{endpoint}/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}/{filename}"
    try:
        meta = get_hf_file_metadata(hf_hub_url(repo_id, filename, repo_type=repo_type, endpoint=endpoint))
        for attempt in range(RETRIES):
            try:  # a new call resumes from the part already downloaded
                path = hf_hub_download(repo_id, filename, repo_type=repo_type, local_dir=local_dir, endpoint=endpoint)
                break
            except _cut_short():
                if attempt == RETRIES - 1:
                    raise
    except (OSError,) + _http_errors()[1] as e:  # huggingface_hub's errors are OSErrors
        if _no_space(e):
            raise UserError(f"no space left on {os.path.abspath(local_dir)} for {what}") from None
        raise _download_error(e, what) from None
    if meta.etag and re.fullmatch(r"[0-9a-f]{64}", meta.etag):
        _check_sha256(path, meta.etag, what)
    return path


def download_url(url, path, sha256=None):
    """--data_url: one plain HTTP file (any host) through huggingface_hub's http_get, written with
    fileio.write_atomic (the old file stays until the new one is whole), checked against --sha256
    when given."""
    from urllib.parse import urlsplit
    from huggingface_hub.file_download import http_get
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    parts = urlsplit(url)
    host = f"{parts.scheme}://{parts.netloc}" if parts.netloc else url

    def fetch(tmp):
        with open(tmp, "wb") as f:
            for attempt in range(RETRIES):
                try:
                    http_get(url, f, resume_size=f.tell(), displayed_filename=os.path.basename(path))
                    break
                except _cut_short():
                    if attempt == RETRIES - 1:
                        raise
        if sha256:
            _check_sha256(tmp, sha256, url)

    try:
        write_atomic(fetch, path)
    except ValueError as e:  # the output is a folder or a special file
        raise UserError(str(e)) from None
    except (OSError,) + _http_errors()[1] as e:
        if isinstance(e, UserError):
            raise
        if _no_space(e):
            raise UserError(f"no space left on {os.path.dirname(os.path.abspath(path))} for {url}") from None
        raise _download_error(e, url, host) from None
    return path


# Archives come from anywhere (--data_url): refuse one that would fill the disk or the inode table
# before a byte is written. The real dataset is far below every default; the flags raise them.
MAX_FILES = 100_000
MAX_FILE_MB = 1024
MAX_TOTAL_MB = 32768
# tarfile's "data" filter (Python 3.12, 3.11.4, 3.10.12) is used where it exists, on top of our own
# checks; False extracts with our checks alone, as on older interpreters (the tests run both).
TAR_DATA_FILTER = hasattr(tarfile, "data_filter")


def _no_space(e):
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", -1))


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _inside(path, root):
    return os.path.commonpath([path, root]) == root


def _checked_member(m, dest, archive):
    """One archive entry through the same refusals as tarfile's "data" filter: a leading "/" is
    stripped (the entry lands inside), '..' or a link may not lead out of dest (checked on disk, so a
    chain of links is followed), no device or FIFO entries. Returns the entry to extract: without
    the filter, a copy with setuid/setgid/sticky and group/other write bits dropped and our owner."""
    name = m.name.lstrip("/" + os.sep)
    dest = os.path.realpath(dest)

    def refuse(why):
        raise UserError(f"{archive}: refusing unsafe entry {m.name!r} ({why})")
    if os.path.isabs(name) or os.path.splitdrive(name)[0]:
        refuse("absolute path")
    if not _inside(os.path.realpath(os.path.join(dest, name)), dest):
        refuse("it would be written outside the folder")
    if m.ischr() or m.isblk() or m.isfifo() or not (m.isreg() or m.isdir() or m.issym() or m.islnk()):
        refuse("device, FIFO or other special file")
    if m.issym():
        if os.path.isabs(m.linkname) or os.path.splitdrive(m.linkname)[0]:
            refuse(f"a link to the absolute path {m.linkname!r}")
        if not _inside(os.path.realpath(os.path.join(dest, os.path.dirname(name), m.linkname)), dest):
            refuse(f"a link to {m.linkname!r}, outside the folder")
    if m.islnk() and not _inside(os.path.realpath(os.path.join(dest, m.linkname.lstrip("/" + os.sep))), dest):
        refuse(f"a hard link to {m.linkname!r}, outside the folder")
    if TAR_DATA_FILTER:
        return m
    m = copy.copy(m)
    m.name = name
    if m.islnk():
        m.linkname = m.linkname.lstrip("/" + os.sep)
    m.uid, m.gid, m.uname, m.gname = os.getuid() if hasattr(os, "getuid") else 0, \
        os.getgid() if hasattr(os, "getgid") else 0, "", ""
    if m.isreg() or m.islnk():
        m.mode = (m.mode & 0o755) | 0o600
        if not m.mode & 0o100:
            m.mode &= ~0o111
    else:
        m.mode = 0o700  # folders get the umask's mode below, as with the filter
    return m


def _archive_limits(tar, archive, parent, max_files, max_file_mb, max_total_mb):
    """Reads every header (a .gz is decompressed once for this) and refuses what would not fit;
    returns the total size of the files in bytes."""
    n = total = 0
    for m in tar:
        n += 1
        if n > max_files:
            raise UserError(f"{archive} holds more than {max_files} entries (--max_files={max_files}); "
                            "raise --max_files if you trust it")
        if m.size > max_file_mb << 20:
            raise UserError(f"{archive}: {m.name!r} is {m.size >> 20} MB, more than --max_file_mb={max_file_mb}; "
                            "raise --max_file_mb if you trust it")
        total += m.size
        if total > max_total_mb << 20:
            raise UserError(f"{archive} unpacks to more than --max_total_mb={max_total_mb} MB; "
                            "raise --max_total_mb if you trust it")
    free = shutil.disk_usage(parent).free
    if total > free:
        raise UserError(f"no space left on {parent} (need ~{_mb(total)} MB, {free >> 20} MB free)")
    return total


def _mb(n):
    return max(1, (n + (1 << 20) - 1) >> 20)


# Each run builds its output in a .extract-XXXX/ or .sample-XXXX/ folder beside it and holds a lock
# on its .lock file; a run killed with -9 leaves the folder behind, and the next run removes every
# such folder whose lock nobody holds (a concurrent run's stays).
TMP_PREFIXES = (".extract-", ".sample-")


def _lock(path):
    """An exclusive lock on path (a file, created), held while the returned file stays open; None
    where the OS has no flock (Windows: there an open file cannot be deleted anyway)."""
    try:
        import fcntl
    except ImportError:
        return None
    f = open(path, "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    return f


def _remove_stale(parent):
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return
    for name in os.listdir(parent):
        path = os.path.join(parent, name)
        if not name.startswith(TMP_PREFIXES) or not os.path.isdir(path) or os.path.islink(path):
            continue
        lock = os.path.join(path, ".lock")
        if not os.path.exists(lock) and time.time() - os.path.getmtime(path) < 600:
            continue  # just made, its owner is about to lock it
        held = _lock(lock) if os.path.exists(lock) else True
        if held:
            print(f"removing {path}, left by an interrupted run")
            shutil.rmtree(path, ignore_errors=True)
            if held is not True:
                held.close()


def _work_dir(parent, prefix):
    """(tmp, lock, data): a fresh locked folder beside the output; data (inside it, with the
    umask's mode, unlike mkdtemp's 0700) is what gets renamed into place."""
    os.makedirs(parent, exist_ok=True)
    _remove_stale(parent)
    tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
    lock = _lock(os.path.join(tmp, ".lock"))
    data = os.path.join(tmp, "data")
    os.mkdir(data)
    return tmp, lock, data


def safe_extract(archive, out_dir, max_files=MAX_FILES, max_file_mb=MAX_FILE_MB, max_total_mb=MAX_TOTAL_MB):
    """Extract a .tar(.gz) of data shards into out_dir, all or nothing: the limits above checked
    first, then every entry through _checked_member (and tarfile's "data" filter where it exists);
    everything lands in a temporary folder next to out_dir, renamed into place only when the whole
    archive was read."""
    parent = os.path.dirname(os.path.abspath(out_dir))
    tmp, lock, data = _work_dir(parent, ".extract-")
    print(f"extracting {archive} to {out_dir}", flush=True)
    total = 0
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                total = _archive_limits(tar, archive, parent, max_files, max_file_mb, max_total_mb)
                if TAR_DATA_FILTER:
                    tar.extractall(data, filter=lambda m, dest: tarfile.data_filter(_checked_member(m, dest, archive), dest))
                else:
                    tar.extractall(data, members=(_checked_member(m, data, archive) for m in tar))
        except UserError:
            raise
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            if _no_space(e):
                raise UserError(f"no space left on {parent} (need ~{_mb(total)} MB); "
                                f"{archive} is kept, free some room and run again") from None
            raise UserError(f"{archive} is corrupt or truncated ({first_line(e)}); "
                            "delete it and run download again") from None
        mode = 0o777 & ~_umask()
        for root, dirs, _ in os.walk(data):  # the filter leaves folders 0700
            for d in dirs:
                if not os.path.islink(os.path.join(root, d)):
                    os.chmod(os.path.join(root, d), mode)
        # the shards may sit in a folder inside the archive: use the innermost single folder
        root = data
        while True:
            entries = os.listdir(root)
            if len(entries) == 1 and os.path.isdir(os.path.join(root, entries[0])) \
                    and not os.path.islink(os.path.join(root, entries[0])):
                root = os.path.join(root, entries[0])
            else:
                break
        if not find_documents(root):
            raise UserError(f"{archive} holds no .jsonl/.json shards")
        os.replace(root, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if lock:
            lock.close()


def print_example(data_dir):
    for text in iter_documents(find_documents(data_dir), {}):
        print("example story:")
        print(text)
        return


def write_sample(data_dir, n=SAMPLE_STORIES, shards=SAMPLE_SHARDS, seed=0):
    """The offline sample corpus, in the real dataset's layout: data00.jsonl (validation) .. data09.jsonl."""
    parent = os.path.dirname(os.path.abspath(data_dir))
    stories = generate_stories(n, seed)
    tmp, lock, data = _work_dir(parent, ".sample-")
    try:
        per = (n + shards - 1) // shards
        for s in range(shards):
            with open(os.path.join(data, f"data{s:02d}.jsonl"), "w", encoding="utf-8") as f:
                for i in range(s * per, min(n, (s + 1) * per)):
                    f.write(json.dumps({"id": i, "story_zh": stories[i]}, ensure_ascii=False) + "\n")
        os.replace(data, data_dir)
    except OSError as e:
        if _no_space(e):
            raise UserError(f"no space left on {parent} (need ~{_mb(sum(map(len, stories)) * 3)} MB)") from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if lock:
            lock.close()
    print(f"wrote {n} generated stories ({sum(map(len, stories))} characters) in {shards} shards to {data_dir}")


def download(dataset="tinystories_zh", data_root=DATA_CACHE_DIR, data_url=None, sha256=None, **limits):
    data_dir = os.path.join(data_root, "TinyStories_all_data")
    if find_documents(data_dir):
        print(f"{data_dir} already holds the data, nothing to do")
    elif dataset == "sample":
        write_sample(data_dir)
    else:
        if data_url:
            archive = os.path.join(data_root, os.path.basename(data_url.split("?")[0]) or DATASET_FILE)
            print(f"downloading {data_url} to {archive}")
            download_url(data_url, archive, sha256)
        else:
            print(f"downloading {DATASET_FILE} of the dataset {DATASET_REPO} from {hub_endpoint()} to {data_root}")
            archive = hub_download(DATASET_REPO, DATASET_FILE, data_root, repo_type="dataset")
            if sha256:
                _check_sha256(archive, sha256, archive)
        safe_extract(archive, data_dir, **limits)
    print_example(data_dir)


def download_model(model, out_dir="."):
    """The published Chinese models and their tokenizer, from the hub or HF_ENDPOINT's mirror."""
    if model not in MODELS:
        raise UserError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    for name in (f"{model}.bin", MODEL_TOKENIZER):
        path = os.path.join(out_dir, name)
        if os.path.exists(path):
            print(f"{path} already there")
            continue
        hub_download(MODEL_REPO, name, out_dir)
        print(f"wrote {path}")
    print(f"now: make run && ./run {os.path.join(out_dir, model + '.bin')} -z {os.path.join(out_dir, MODEL_TOKENIZER)}")


# -----------------------------------------------------------------------------
# reading documents: .jsonl (one JSON object a line), .json (an array), .txt / .md (one document a file)

DOC_EXTS = (".jsonl", ".json", ".txt", ".md")


def find_documents(data_dir):
    """Every document file under data_dir, sorted (the first one is the validation split)."""
    if not os.path.isdir(data_dir):
        return []
    out = []
    for root, dirs, files in os.walk(data_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [os.path.join(root, f) for f in files if f.endswith(DOC_EXTS) and not f.startswith(".")]
    return sorted(out)


def _text_of(obj, check=True):
    """The story in a JSON value, or None. A string with a lone surrogate (a "\\ud800" escape) is
    no valid Unicode, which sentencepiece cannot take either: None too (check=False: known to have none)."""
    if isinstance(obj, dict):
        for key in TEXT_FIELDS:
            if isinstance(obj.get(key), str):
                obj = obj[key]
                break
    if not isinstance(obj, str):
        return None
    if check:
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError:
            return None
    return obj


MAX_DOC_MB = 16  # a line of a .jsonl, or a whole .json/.txt/.md, over this is skipped (--max_doc_mb)
_SURROGATE = re.compile(rb"\\u[dD][89abAB]")  # a lone surrogate can only come from such an escape


def _values(path, max_bytes, stats):
    """(JSON value or text, check) for every document in one file; the value is None for a line or
    file that does not parse. check says whether strings may hold lone surrogates (see _text_of).
    A line (.jsonl) or file (.json/.txt/.md) longer than max_bytes is skipped unread and counted in
    stats["too_big"]: nothing is ever read whole, so a crafted file (a 2 GB line) costs no memory."""
    with open(path, "rb") as f:
        if not path.endswith(".jsonl"):
            raw = f.read(max_bytes + 1)
            if len(raw) > max_bytes:
                stats["too_big"] = stats.get("too_big", 0) + 1
                return
            try:
                docs = json.loads(raw.decode("utf-8")) if path.endswith(".json") else [raw.decode("utf-8")]
            except (UnicodeDecodeError, ValueError, RecursionError):
                yield None, True
                return
            for d in docs if isinstance(docs, list) else [docs]:
                yield d, True
            return
        while line := f.readline(max_bytes + 1):
            if len(line) > max_bytes and not line.endswith(b"\n"):  # too long: skip to its end
                while (rest := f.readline(1 << 20)) and not rest.endswith(b"\n"):
                    pass
                stats["too_big"] = stats.get("too_big", 0) + 1
                continue
            if line.strip():
                try:
                    yield json.loads(line.decode("utf-8")), _SURROGATE.search(line) is not None
                except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: [[[[...]]]]
                    yield None, True


def iter_documents(files, stats, max_doc_mb=MAX_DOC_MB):
    """Yield the stories in files; malformed or non-UTF-8 lines/files are skipped and counted in
    stats["bad"], those over max_doc_mb MB in stats["too_big"]."""
    for path in files:
        for value, check in _values(path, max_doc_mb << 20, stats):
            text = _text_of(value, check)
            if text is None:
                stats["bad"] = stats.get("bad", 0) + 1
            elif text := text.strip():
                yield text


def skipped(stats, max_doc_mb, sep=", "):
    """What iter_documents skipped, for the summary line ("" when nothing was)."""
    out = f"{sep}skipped {stats['bad']} malformed or non-UTF-8 lines or files" if stats.get("bad") else ""
    if stats.get("too_big"):
        out += f"{sep}skipped {stats['too_big']} lines or files over {max_doc_mb} MB (raise the bound with --max_doc_mb)"
    return out


def _source_dir(data_root, data_dir):
    d = data_dir or os.path.join(data_root, "TinyStories_all_data")
    if data_dir and not os.path.isdir(data_dir):
        raise UserError(f"--data_dir {data_dir} is not a folder (give the folder that holds the files)")
    files = find_documents(d)
    if not files:
        hint = "" if data_dir else " (run: python3 tinystories.py download, or download --dataset=sample)"
        raise UserError(f"no .jsonl/.json/.txt/.md files in {d}{hint}")
    for f in files:  # reading a FIFO would wait forever for a writer; a device never ends
        try:
            if not stat.S_ISREG(os.stat(f).st_mode):
                raise UserError(f"{f} is not a regular file (a FIFO, socket or device?); move it out of {d}")
        except OSError as e:
            raise UserError(f"cannot read {f}: {e.strerror}") from None
    return files


# -----------------------------------------------------------------------------
# train_vocab and pretokenize

def train_vocab(vocab_size, data_root=DATA_CACHE_DIR, data_dir=None, max_chars=20_000_000, max_doc_mb=MAX_DOC_MB):
    """Train tok{vocab_size}.model on a bounded sample of the stories, read as a stream. The sample is
    taken from the training shards first (the first shard is validation), spread over the files."""
    if max_doc_mb <= 0:
        raise UserError(f"max_doc_mb must be positive, got {max_doc_mb}")
    if not 0 < vocab_size <= 65535:
        raise UserError(f"vocab_size must be in 1..65535 (the shards are uint16), got {vocab_size}")
    if max_chars <= 0:  # would train on a single story without a word
        raise UserError(f"max_chars must be positive, got {max_chars}")
    files = _source_dir(data_root, data_dir)
    files = files[1:] + files[:1] if len(files) > 1 else files
    per_file = max(max_chars // min(len(files), 20), 1)  # at most 20 files, so the sample stays spread
    texts, total, stats = [], 0, {}
    for path in files:
        got = 0
        for text in iter_documents([path], stats, max_doc_mb):
            texts.append(text)
            got += len(text)
            if got >= per_file or total + got >= max_chars:
                break
        total += got
        if total >= max_chars:
            break
    print(f"training a {vocab_size}-piece BPE vocabulary on {len(texts)} stories ({total} characters)"
          + skipped(stats, max_doc_mb))
    prefix = os.path.join(data_root, f"tok{vocab_size}")
    os.makedirs(data_root, exist_ok=True)
    t0 = time.time()
    train_sp_model(texts, prefix, vocab_size)
    print(f"wrote {prefix}.model and {prefix}.vocab in {time.time() - t0:.1f}s")


_ENCODERS = {}  # model path -> (sentencepiece processor, bpe.c FastEncoder or None, why not), per pretokenize call


def _make_encoders(model_path, sp=None, encoder="auto"):
    import sentencepiece as spm
    from tokenizer import fast_encoder
    sp = sp or spm.SentencePieceProcessor(model_file=model_path)
    return (sp,) + (fast_encoder(model_path, sp) if encoder != "sentencepiece" else (None, "--encoder=sentencepiece"))


def _encoders(model_path):
    """A pool worker's encoders: pretokenize's own when forked, else made once in this process."""
    if model_path not in _ENCODERS:
        _ENCODERS[model_path] = _make_encoders(model_path)
    return _ENCODERS[model_path]


def encode_shard(sp, texts, threads=1):
    """[BOS] + sp.encode(text) + [EOS] for every text, as one uint16 array. The texts go to
    sentencepiece in large batches (its C++ loop, on `threads` threads) and the array is filled with
    numpy, so no Python code runs per token."""
    ids = []
    for i in range(0, len(texts), 8192):
        ids += sp.encode(texts[i:i + 8192], num_threads=threads)
    lens = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    ends = np.cumsum(lens + 2)  # one past each story's EOS
    arr = np.empty(int(ends[-1]) if len(ids) else 0, dtype=np.uint16)
    keep = np.ones(len(arr), dtype=bool)
    keep[ends - lens - 2] = keep[ends - 1] = False
    arr[~keep] = np.tile([sp.bos_id(), sp.eos_id()], len(ids))
    arr[keep] = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.uint16, count=int(lens.sum()))
    return arr


FAST_CHUNK = 4 << 20  # characters per bpe.c call: bounds its output buffer, spreads one file over threads
CHECK_EVERY = 101     # every 101st story is also encoded by sentencepiece and compared


def encode_shard_fast(enc, texts, threads=1, name="?"):
    """As encode_shard, with bpe.c (tokenizer.fast_encoder) on `threads` threads (it releases the GIL).
    A sample of the stories is checked against sentencepiece; on any difference the texts are encoded
    again by sentencepiece, so a bug in bpe.c could slow pretokenize down but never change a shard."""
    n_chunks = max(threads, -(-sum(map(len, texts)) // FAST_CHUNK))  # at least one per thread
    step = max(1, -(-len(texts) // n_chunks))
    chunks = [texts[i:i + step] for i in range(0, len(texts), step)]
    if threads > 1 and len(chunks) > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            parts = list(pool.map(enc.encode_docs, chunks))
    else:
        parts = [enc.encode_docs(c) for c in chunks]
    arr = np.concatenate(parts) if parts else np.empty(0, dtype=np.uint16)
    sp, starts = enc.sp, np.flatnonzero(arr == enc.sp.bos_id())  # BOS only ever opens a story
    for i in range(0, len(texts), CHECK_EVERY):
        if arr[starts[i] + 1:(starts[i + 1] if i + 1 < len(texts) else len(arr)) - 1].tolist() != sp.encode(texts[i]):
            print(f"warning: bpe.c and sentencepiece disagree on story {i} of {name}; encoding it with "
                  "sentencepiece (please report this)", file=sys.stderr)
            return encode_shard(sp, texts, threads)
    return arr


def _encode_file(task):
    """Worker: tokenize one source file into one uint16 shard, [BOS] + tokens + [EOS] per story."""
    src, model_path, out_path, threads, use_fast, max_doc_mb = task
    sp, fast, _ = _encoders(model_path)
    stats = {}
    texts = list(iter_documents([src], stats, max_doc_mb))
    arr = encode_shard_fast(fast, texts, threads, src) if use_fast else encode_shard(sp, texts, threads)
    write_atomic(arr.tofile, out_path, arr.nbytes)  # a shard is either whole or absent
    return src, len(texts), sum(map(len, texts)), len(arr), stats


def _die_with_parent(parent_pid):
    """Pool worker initializer: the worker ends when pretokenize's process does, even by kill -9.
    Otherwise it waits forever for tasks on a pipe that its siblings hold open."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        else:
            if os.getppid() != parent_pid:  # the parent died before prctl took effect
                os._exit(1)
            return

    def watch():  # elsewhere: notice the parent's death by being adopted
        while os.getppid() == parent_pid:
            time.sleep(1)
        os._exit(1)
    if os.getppid() == parent_pid:  # on Windows it never changes: no watch there
        threading.Thread(target=watch, daemon=True).start()


def _shard_names(files, data_dir):
    """One output name per source file: its path under data_dir, extension swapped for .bin."""
    names = [os.path.splitext(os.path.relpath(f, data_dir))[0].replace(os.sep, "_") for f in files]
    if len(set(names)) < len(names):  # a.txt and a.md: keep the extension in the name
        names = [os.path.relpath(f, data_dir).replace(os.sep, "_") for f in files]
    return [n + ".bin" for n in names]


def pretokenize(vocab_size, data_root=DATA_CACHE_DIR, data_dir=None, num_workers=None, encoder="auto",
                max_doc_mb=MAX_DOC_MB):
    """Tokenize every source file into {data_root}/tok{vocab_size}/NAME.bin. vocab_size=0 uses the
    Llama 2 tokenizer.model (as the original) and writes the shards next to the sources.
    encoder: "bpe" (bpe.c, see tokenizer.fast_encoder), "sentencepiece", or "auto" (bpe.c when it can)."""
    if encoder not in ("auto", "bpe", "sentencepiece"):
        raise UserError(f"encoder must be auto, bpe or sentencepiece, got {encoder!r}")
    if not 0 <= vocab_size <= 65535:
        raise UserError(f"vocab_size must be in 1..65535 (the shards are uint16), got {vocab_size}")
    if max_doc_mb <= 0:
        raise UserError(f"max_doc_mb must be positive, got {max_doc_mb}")
    model_path = os.path.join(data_root, f"tok{vocab_size}.model") if vocab_size else "tokenizer.model"
    if not os.path.isfile(model_path):
        raise UserError(f"{model_path} not found (run: python3 tinystories.py train_vocab --vocab_size={vocab_size})"
                        if vocab_size else "tokenizer.model (the Llama 2 tokenizer) not found in the current folder")
    import sentencepiece as spm
    try:
        sp = spm.SentencePieceProcessor(model_file=model_path)
    except (OSError, RuntimeError) as e:
        raise UserError(f"{model_path} is not a sentencepiece model ({first_line(e)})") from None
    if vocab_size and sp.vocab_size() != vocab_size:
        raise UserError(f"{model_path} has {sp.vocab_size()} pieces, not {vocab_size}")
    if sp.bos_id() < 0 or sp.eos_id() < 0:
        raise UserError(f"{model_path} has no BOS/EOS pieces, which every story is wrapped in")
    src_dir = data_dir or os.path.join(data_root, "TinyStories_all_data")
    files = _source_dir(data_root, data_dir)
    out_dir = os.path.join(data_root, f"tok{vocab_size}") if vocab_size else src_dir
    os.makedirs(out_dir, exist_ok=True)
    names = _shard_names(files, src_dir)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cpus = num_workers or cpus
    workers = max(1, min(cpus, len(files)))
    threads = max(1, cpus // workers)
    t0 = time.time()
    _ENCODERS.clear()  # made afresh for every call (the model file may have changed); forked workers inherit them
    _ENCODERS[model_path] = _make_encoders(model_path, sp, encoder)
    _, fast, why_not = _ENCODERS[model_path]
    if encoder == "bpe" and not fast:
        raise UserError(f"--encoder=bpe: bpe.c cannot encode with {model_path}: {why_not}")
    use_fast = fast is not None
    if not use_fast and encoder == "auto":
        print(f"encoding with sentencepiece: {why_not}")
    encoder = "bpe.c" if use_fast else "sentencepiece"
    tasks = [(f, model_path, os.path.join(out_dir, n), threads, use_fast, max_doc_mb) for f, n in zip(files, names)]
    from tqdm import tqdm
    results = []

    def encode_all(map_fn):
        # the bar is closed (its line ended) before an error propagates: older tqdm redraws an open
        # bar at exit, below the one-line error
        with tqdm(total=len(tasks), desc="pretokenize", unit="shard") as bar:
            for r in map_fn(_encode_file, tasks):
                results.append(r)
                bar.update()

    if workers == 1:
        encode_all(map)
    else:
        # fork where there is one (Linux): the workers inherit the encoders, and are our children
        ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else None)
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_die_with_parent,
                                 initargs=(os.getpid(),)) as pool:
            encode_all(pool.map)  # (map cancels the tasks not started yet when one fails, e.g. on a full disk)
    stale = [f for f in glob.glob(os.path.join(out_dir, "*.bin")) if os.path.basename(f) not in set(names)]
    for f in stale if vocab_size else []:  # shards of an earlier run over other files would mix into training
        os.remove(f)
    stories = sum(r[1] for r in results)
    chars = sum(r[2] for r in results)
    tokens = sum(r[3] for r in results)
    stats = {k: sum(r[4].get(k, 0) for r in results) for k in ("bad", "too_big")}
    dt = time.time() - t0
    print(f"wrote {len(results)} shards to {out_dir}: {stories} stories, {chars} characters, {tokens} tokens "
          f"({tokens / max(stories, 1):.1f} per story) in {dt:.1f}s ({chars / max(dt, 1e-9):,.0f} chars/s, {encoder}); "
          f"first shard {names[0]} is the validation split" + skipped(stats, max_doc_mb, "; "))
    return results


# -----------------------------------------------------------------------------
# streaming batches for training

class BatchStream:
    """Batches of windows of max_seq_len+1 tokens from memory-mapped shards, in the original's order:
    each epoch visits the shards in a shuffled order and each shard's non-overlapping windows in a
    shuffled order. The order is a pure function of (seed, rank, epoch, shard), so the whole state is
    three counters and a resumed stream continues with exactly the same batches."""

    def __init__(self, split, batch_size, max_seq_len, vocab_size, vocab_source, data_root=DATA_CACHE_DIR,
                 seed=1337, rank=0):
        if vocab_source == "custom":
            bin_dir = os.path.join(data_root, f"tok{vocab_size}")
            hint = f"python3 tinystories.py pretokenize --vocab_size={vocab_size}"
        elif vocab_source == "llama2":
            bin_dir = os.path.join(data_root, "TinyStories_all_data")
            hint = "python3 tinystories.py pretokenize --vocab_size=0 (with the Llama 2 tokenizer)"
        else:
            raise ValueError(f"vocab_source must be 'custom' or 'llama2', got {vocab_source!r}")
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        shards = sorted(glob.glob(os.path.join(bin_dir, "*.bin")))
        if not shards:
            raise FileNotFoundError(f"no pretokenized shards (*.bin) in {bin_dir}: run {hint}")
        if len(shards) < 2:
            raise FileNotFoundError(f"only one shard in {bin_dir}: the first shard is the validation split and "
                                    "training needs at least one more (give pretokenize two or more files)")
        shards = shards[:1] if split == "val" else shards[1:]
        self.shards, self.maps = [], []
        for path in shards:
            size = os.path.getsize(path)
            if size % 2:
                raise ValueError(f"{path} is not a uint16 shard (odd size {size} bytes)")
            if size // 2 > max_seq_len:  # a shard shorter than one window has nothing to give
                self.shards.append(path)
                self.maps.append(np.memmap(path, dtype=np.uint16, mode="r"))
        if not self.shards:
            raise ValueError(f"the {split} shards in {bin_dir} are shorter than max_seq_len+1={max_seq_len + 1} tokens")
        self.batch_size, self.max_seq_len, self.vocab_size = batch_size, max_seq_len, vocab_size
        self.seed, self.rank = seed, rank
        self.epoch = self.shard_pos = self.chunk_pos = 0
        self._perm_key = self._order_key = None

    def _shard_order(self):
        # cached per epoch: next_batch asks once per row
        if self._order_key != self.epoch:
            self._order = np.random.default_rng([self.seed, self.rank, self.epoch]).permutation(len(self.shards))
            self._order_key = self.epoch
        return self._order

    def _windows(self, shard):
        key = (self.epoch, shard)
        if self._perm_key != key:
            n = (len(self.maps[shard]) - 1) // self.max_seq_len
            self._perm = np.random.default_rng([self.seed, self.rank, self.epoch, 1 + shard]).permutation(n)
            self._perm_key = key
        return self._perm

    def next_batch(self, device):
        import torch
        T = self.max_seq_len
        rows = []
        while len(rows) < self.batch_size:
            order = self._shard_order()
            shard = int(order[self.shard_pos])
            perm = self._windows(shard)
            start = int(perm[self.chunk_pos]) * T
            rows.append(self.maps[shard][start:start + T + 1])
            self.chunk_pos += 1
            if self.chunk_pos == len(perm):
                self.chunk_pos, self.shard_pos = 0, self.shard_pos + 1
                if self.shard_pos == len(self.shards):
                    self.shard_pos, self.epoch = 0, self.epoch + 1
        b = np.stack(rows).astype(np.int64)
        if b.max() >= self.vocab_size:
            raise ValueError(f"token id {int(b.max())} in the shards is >= vocab_size={self.vocab_size}: "
                             "the shards were made with another vocabulary")
        x = torch.from_numpy(b[:, :-1].copy())
        y = torch.from_numpy(b[:, 1:].copy())
        if str(device).startswith("cuda"):
            x = x.pin_memory().to(device, non_blocking=True)
            y = y.pin_memory().to(device, non_blocking=True)
        else:
            x, y = x.to(device), y.to(device)
        return x, y

    def state_dict(self):
        return {"seed": self.seed, "rank": self.rank, "epoch": self.epoch, "shard_pos": self.shard_pos,
                "chunk_pos": self.chunk_pos, "shards": [os.path.basename(p) for p in self.shards]}

    def load_state_dict(self, d):
        self.seed, self.rank, self.epoch = int(d["seed"]), int(d["rank"]), int(d["epoch"])
        self._perm_key = self._order_key = None  # the cached orders depend on seed and rank too
        self.shard_pos, self.chunk_pos = int(d["shard_pos"]), int(d["chunk_pos"])
        if d.get("shards") != [os.path.basename(p) for p in self.shards]:
            print("warning: the shards changed since the checkpoint; the data stream restarts its epoch",
                  file=sys.stderr)
            self.shard_pos = self.chunk_pos = 0
        elif self.chunk_pos >= len(self._windows(int(self._shard_order()[self.shard_pos]))):
            raise ValueError("the stream state does not fit these shards (were they rewritten?)")


# -----------------------------------------------------------------------------
# command line

def main(argv=None):
    parser = arg_parser("Chinese TinyStories: download, train_vocab, pretokenize")
    parser.add_argument("stage", choices=["download", "download_model", "train_vocab", "pretokenize"])
    parser.add_argument("--dataset", default="tinystories_zh", choices=["tinystories_zh", "sample"],
                        help="download: the real dataset from the hub, or the offline generated sample")
    parser.add_argument("--data_url", default=None, help="download: fetch the tarball from this URL (any host) instead of the hub")
    parser.add_argument("--sha256", default=None, help="download: expected sha256 of the tarball")
    parser.add_argument("--max_files", type=int, default=MAX_FILES, help="download: refuse an archive with more entries")
    parser.add_argument("--max_file_mb", type=int, default=MAX_FILE_MB, help="download: refuse an archive with a larger file (MB)")
    parser.add_argument("--max_total_mb", type=int, default=MAX_TOTAL_MB, help="download: refuse an archive that unpacks to more (MB)")
    parser.add_argument("--model", default="stories15M", help="download_model: " + "|".join(MODELS))
    parser.add_argument("--out_dir", default=".", help="download_model: where to put the files")
    parser.add_argument("--vocab_size", type=int, default=0, help="train_vocab/pretokenize: vocabulary size")
    parser.add_argument("--data_dir", default=None, help="train_vocab/pretokenize: a folder of your own "
                        ".jsonl/.json/.txt/.md files instead of the downloaded shards")
    parser.add_argument("--data_root", default=DATA_CACHE_DIR, help="the cache folder (default: data)")
    parser.add_argument("--max_chars", type=int, default=20_000_000, help="train_vocab: sample size in characters")
    parser.add_argument("--max_doc_mb", type=int, default=MAX_DOC_MB, help="train_vocab/pretokenize: a .jsonl "
                        "line or a .json/.txt/.md file over this many MB is skipped (and counted)")
    parser.add_argument("--num_workers", type=int, default=0, help="pretokenize: cores to use (0: all)")
    parser.add_argument("--encoder", default="auto", choices=["auto", "bpe", "sentencepiece"],
                        help="pretokenize: bpe.c (make bpe; same tokens, faster) or sentencepiece; auto: bpe.c if it can")
    args = parser.parse_args(argv)
    for flag in ("max_files", "max_file_mb", "max_total_mb"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    if args.num_workers < 0:
        parser.error(f"--num_workers must be >= 0 (0: all cores), got {args.num_workers}")
    try:
        if args.stage == "download":
            download(args.dataset, args.data_root, args.data_url, args.sha256, max_files=args.max_files,
                     max_file_mb=args.max_file_mb, max_total_mb=args.max_total_mb)
        elif args.stage == "download_model":
            download_model(args.model, args.out_dir)
        elif args.stage == "train_vocab":
            train_vocab(args.vocab_size, args.data_root, args.data_dir, args.max_chars, args.max_doc_mb)
        elif args.stage == "pretokenize":
            pretokenize(args.vocab_size, args.data_root, args.data_dir, args.num_workers or None, args.encoder,
                        args.max_doc_mb)
    except (UserError, OSError) as e:
        die(e)
    except KeyboardInterrupt:
        interrupted()


if __name__ == "__main__":
    main()
