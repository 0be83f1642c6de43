"""
Translate English TinyStories into Chinese through any OpenAI-compatible chat endpoint
(vLLM, llama.cpp server, Ollama, hosted APIs). This is the step the original project
did by hand to build its Chinese corpus.

    python3 translate.py --input data/TinyStories_all_data --output data/TinyStories_zh \
        --api_base http://127.0.0.1:8000/v1 --model NAME [--concurrency 8] [--limit N]

Input: a folder of English shards, `.json` arrays of objects with a `story` field (the
English TinyStories layout) and/or `.jsonl` files with one such object per line.
Output: one `.jsonl` shard per input shard, each line {"id", "story", "story_zh"}, the
layout `tinystories.py download` produces, so train_vocab / pretokenize read it unchanged.
The id is "<input shard name>:<position in that shard>" and never changes between runs.

Progress is durable: every finished story is appended to `<shard>.jsonl.partial` and
fsynced; a shard whose stories are all resolved is sorted and atomically renamed to
`<shard>.jsonl`. Kill the process at any moment and run the same command again: nothing
is lost, nothing appears twice, finished shards are not touched. Replies that stay bad
after the retries (empty, cut, not Chinese, the English echoed) go to `rejects.ndjson`
in the output folder, with the reason.
"""
import email.utils
import functools
import json
import os
import random
import re
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import requests
from tqdm import tqdm

import errors
from fileio import lock_folder, write_bytes_atomic

PREFIX = "translate.py: "  # its messages name it: it runs for hours, beside other tools' output
die = functools.partial(errors.die, prefix=PREFIX)

# -----------------------------------------------------------------------------
# the prompt and the names

DEFAULT_PROMPT = """You translate children's stories from English into Simplified Chinese.
Translate faithfully, sentence by sentence: keep every event, every line of dialogue and
every detail; add nothing and leave nothing out. Write simple, natural Chinese that a young
child can read: short sentences, common characters, Chinese punctuation, and Chinese
quotation marks “” for dialogue. Keep the paragraph breaks of the original.
Render a name the same way every time it appears.
Reply with the Chinese translation only: no title, no notes, no English, no pinyin."""

# Common TinyStories names, so every story spells them the same way (the original's data
# says 莉莉 for Lily). --glossary adds to or overrides these.
GLOSSARY = {
    "Lily": "莉莉", "Tom": "汤姆", "Ben": "本", "Sue": "苏", "Sara": "萨拉", "Sarah": "莎拉",
    "Max": "麦克斯", "Tim": "蒂姆", "Timmy": "提米", "Anna": "安娜", "Mia": "米娅",
    "Jack": "杰克", "Sam": "山姆", "Lucy": "露西", "Bob": "鲍勃", "Amy": "艾米",
    "Emma": "艾玛", "Joe": "乔", "Billy": "比利", "Jill": "吉尔", "Jane": "简",
    "Molly": "莫莉", "Zoe": "佐伊", "Sally": "莎莉", "Tommy": "汤米", "Sophie": "苏菲",
    "Ellie": "艾莉", "Bella": "贝拉", "Daisy": "黛西", "Kate": "凯特", "Leo": "利奥",
    "Mark": "马克", "Spot": "斑斑", "Mom": "妈妈", "Mommy": "妈妈", "Dad": "爸爸",
    "Daddy": "爸爸",
}


def load_glossary(path):
    """A JSON object {"Lily": "莉莉"} or a TSV file with `English<TAB>Chinese` lines."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except OSError as e:
        die(f"cannot read glossary {path}: {e.strerror}")
    except UnicodeDecodeError:
        die(f"glossary {path} is not valid UTF-8")
    if path.endswith(".json") or text.lstrip().startswith("{"):
        try:
            table = json.loads(text)
        except json.JSONDecodeError as e:
            die(f"glossary {path} is not valid JSON: {e.msg} at line {e.lineno}")
        if not isinstance(table, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and k.strip() and v.strip()
                for k, v in table.items()):
            die(f"glossary {path} must be a JSON object of non-empty strings, e.g. {{\"Lily\": \"莉莉\"}}")
        return {k.strip(): v.strip() for k, v in table.items()}
    table = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            die(f"glossary {path} line {n}: expected 'English<TAB>Chinese'")
        table[parts[0].strip()] = parts[1].strip()
    return table


def glossary_matcher(glossary):
    """One regex over all names, longest first, on word boundaries (Tim must not match Timmy)."""
    if not glossary:
        return None
    names = sorted(glossary, key=len, reverse=True)
    return re.compile(r"(?<!\w)(" + "|".join(re.escape(n) for n in names) + r")(?!\w)")


def system_prompt(base, glossary, matcher, story):
    # Only the names this story uses: a large user glossary would otherwise fill the context.
    # They go at the end so servers with prefix caching reuse the fixed part.
    if matcher is None:
        return base
    used = sorted(set(matcher.findall(story)))
    if not used:
        return base
    lines = "\n".join(f"{name} → {glossary[name]}" for name in used)
    return f"{base}\nUse these Chinese names:\n{lines}"

# -----------------------------------------------------------------------------
# checking a reply

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
LATIN = re.compile(r"[A-Za-z]")
ECHO_WORDS = 8  # this many consecutive English words in the reply means it echoed the source


def clean_reply(text):
    # reasoning models (Qwen3, DeepSeek-R1) served raw put their thinking before the answer
    text = re.sub(r"^\s*<think>.*?</think>", "", text, flags=re.S).strip()
    # models like to wrap answers in a code fence, sometimes with a language tag
    if len(text) >= 6 and text.startswith("```") and text.endswith("```"):
        first, _, rest = text[3:-3].partition("\n")
        text = (rest if rest and not CJK.search(first) else text[3:-3]).strip()
    return text


def reply_problem(english, chinese, finish_reason):
    """None when the reply is a usable translation, else a short reason."""
    if not chinese:
        return "empty reply"
    if finish_reason == "length":
        return "reply cut off (finish_reason=length)"
    words = english.split()
    flat = " ".join(chinese.split())
    n = min(ECHO_WORDS, len(words))
    if n and any(" ".join(words[i:i + n]) in flat for i in range(len(words) - n + 1)):
        return "English echoed back"
    cjk, latin = len(CJK.findall(chinese)), len(LATIN.findall(chinese))
    if cjk == 0 or cjk < latin:
        return f"not Chinese ({cjk} CJK vs {latin} Latin letters)"
    return None

# -----------------------------------------------------------------------------
# talking to the server


@dataclass
class Api:
    base: str
    model: str
    key: str
    temperature: float
    max_tokens: int
    timeout: float
    max_retries: int
    backoff_base: float
    backoff_max: float
    stop: threading.Event = field(default_factory=threading.Event)
    pause_until: float = 0.0  # a 429 pauses every worker, not just the one that got it
    lock: threading.Lock = field(default_factory=threading.Lock)
    local: threading.local = field(default_factory=threading.local)

    def headers(self):
        h = {"Content-Type": "application/json"}
        if self.key:
            h["Authorization"] = f"Bearer {self.key}"
        return h

    def session(self):
        # requests.Session is not thread-safe: one per worker thread, which also keeps connections alive
        if not hasattr(self.local, "s"):
            self.local.s = requests.Session()
        return self.local.s


@dataclass
class Result:
    kind: str            # "ok", "reject" (bad replies), "fail" (server kept failing), "fatal", "stopped"
    text: str = ""       # the translation, or the reason
    reply: str = ""      # the last bad reply, for the rejects file
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def retry_after_seconds(value):
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def translate_one(api, prompt, story):
    """Send one story, retrying what can be retried. Runs in a worker thread; touches no files."""
    body = {"model": api.model, "temperature": api.temperature,
            "messages": [{"role": "system", "content": prompt}, {"role": "user", "content": story}]}
    if api.max_tokens > 0:
        body["max_tokens"] = api.max_tokens
    res = Result("fail")
    bad_reply = False  # was the last failure a bad reply (-> reject) or the server (-> retry later)?
    for attempt in range(api.max_retries + 1):
        if attempt:
            res.retries += 1
        wait_s = api.pause_until - time.time()
        if wait_s > 0 and api.stop.wait(wait_s):
            return Result("stopped")
        if api.stop.is_set():
            return Result("stopped")
        retry_after = None
        try:
            r = api.session().post(f"{api.base}/chat/completions", json=body, headers=api.headers(),
                                   timeout=(min(10.0, api.timeout), api.timeout))
        except requests.Timeout:
            res.text, bad_reply = f"timed out after {api.timeout:g}s", False
        except requests.RequestException as e:
            res.text, bad_reply = f"connection error ({type(e).__name__})", False
        else:
            if r.status_code == 200:
                try:
                    data = r.json()
                    choice = data["choices"][0]
                    content = choice["message"]["content"] or ""
                    finish = choice.get("finish_reason")
                    usage = data.get("usage") or {}
                    res.prompt_tokens += int(usage.get("prompt_tokens") or 0)
                    res.completion_tokens += int(usage.get("completion_tokens") or 0)
                except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                    res.text, res.reply, bad_reply = "malformed reply (not chat-completions JSON)", r.text[:500], True
                else:
                    zh = clean_reply(content)
                    problem = reply_problem(story, zh, finish)
                    if problem is None:
                        res.kind, res.text = "ok", zh
                        return res
                    res.text, res.reply, bad_reply = problem, content[:2000], True
            elif r.status_code == 429:
                retry_after = retry_after_seconds(r.headers.get("Retry-After"))
                res.text, bad_reply = "HTTP 429 (rate limited)", False
                if retry_after is not None:
                    with api.lock:
                        api.pause_until = max(api.pause_until, time.time() + min(retry_after, 600.0))
            elif r.status_code >= 500 or r.status_code == 408:
                res.text, bad_reply = f"HTTP {r.status_code}", False
            elif r.status_code in (401, 403):
                return Result("fatal", f"the server refused the API key (HTTP {r.status_code}); set OPENAI_API_KEY or --api_key")
            elif r.status_code == 404:
                return Result("fatal", f"HTTP 404 from {api.base}/chat/completions: wrong --api_base or unknown --model {api.model!r}")
            else:
                # e.g. 400 for a story longer than the model's context: this story, not the run
                res.text, res.reply, bad_reply = f"HTTP {r.status_code}", r.text[:500], True
        if attempt < api.max_retries:
            delay = min(api.backoff_max, api.backoff_base * 2 ** attempt) * random.uniform(0.5, 1.5)
            if retry_after is not None:
                delay = max(delay, min(retry_after, 600.0))
            if api.stop.wait(delay):
                return Result("stopped")
    res.kind = "reject" if bad_reply else "fail"
    return res


def check_server(api):
    """Fail fast with one line when the endpoint cannot be reached at all."""
    try:
        r = api.session().get(f"{api.base}/models", headers=api.headers(), timeout=min(10.0, api.timeout))
    except requests.RequestException as e:
        die(f"cannot reach {api.base} ({type(e).__name__}); is the server running?")
    if r.status_code in (401, 403):
        die(f"the server refused the API key (HTTP {r.status_code}); set OPENAI_API_KEY or --api_key")
    # any other answer (even 404: not every server lists models) means someone is listening

# -----------------------------------------------------------------------------
# shards on disk


def list_shards(input_dir):
    if os.path.isfile(input_dir):
        die(f"--input {input_dir} is a file; give the folder that holds the shards")
    if not os.path.isdir(input_dir):
        die(f"input folder {input_dir} does not exist (download the English TinyStories first)")
    names = sorted(n for n in os.listdir(input_dir) if n.endswith((".json", ".jsonl"))
                   and os.path.isfile(os.path.join(input_dir, n)))
    if not names:
        die(f"no .json or .jsonl shards in {input_dir}")
    stems = {}
    for n in names:
        stem = n.rsplit(".", 1)[0]
        if stem in stems:
            die(f"{stems[stem]} and {n} in {input_dir} would both be written to {stem}.jsonl")
        stems[stem] = n
    return [os.path.join(input_dir, n) for n in names]


def good_story(rec):
    return isinstance(rec, dict) and isinstance(rec.get("story"), str) and rec["story"].strip() != ""


def load_shard(path):
    """[(position, record)] of the usable stories and the number of malformed ones skipped."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        die(f"cannot read {path}: {e.strerror}")
    if path.endswith(".json"):
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            die(f"{path} is not valid UTF-8 (byte {e.start})")
        except json.JSONDecodeError as e:
            die(f"{path} is not valid JSON ({e.msg} at line {e.lineno}); is the download complete?")
        if not isinstance(data, list):
            die(f"{path} must hold a JSON array of stories")
        items = list(enumerate(data))
    else:
        items = []
        for pos, line in enumerate(raw.split(b"\n")):
            if not line.strip():
                continue
            try:
                items.append((pos, json.loads(line.decode("utf-8"))))
            except (UnicodeDecodeError, json.JSONDecodeError):
                items.append((pos, None))
    good = [(pos, rec) for pos, rec in items if good_story(rec)]
    return good, len(items) - len(good)


def read_records(path):
    """Complete records of an append-only jsonl file; a torn last line (killed mid-write) is ignored."""
    out = []
    if not os.path.exists(path):
        return out
    with open(path, "rb") as f:
        raw = f.read()
    for line in raw.split(b"\n")[:-1]:  # the piece after the last newline is torn or empty
        try:
            rec = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(rec, dict) and isinstance(rec.get("id"), str):
            out.append(rec)
    return out


def open_append(path):
    """Open an append-only log, first cutting off a torn last line so the next record starts clean."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    size = os.lseek(fd, 0, os.SEEK_END)
    if size:
        keep, pos = 0, size
        while pos > 0 and not keep:
            step = min(65536, pos)
            pos -= step
            os.lseek(fd, pos, os.SEEK_SET)
            chunk = os.read(fd, step)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                keep = pos + nl + 1
        if keep != size:
            os.ftruncate(fd, keep)
            os.fsync(fd)
    os.lseek(fd, 0, os.SEEK_END)
    return fd


def append_record(fd, rec):
    os.write(fd, (json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8"))
    os.fsync(fd)  # a story is done only once it is on disk


def finalize_shard(partial, final):
    """Sort the partial by position, write it whole, rename into place, then drop the partial."""
    recs = {}
    for rec in read_records(partial):
        recs.setdefault(rec["id"], rec)  # first copy wins; there should be only one
    order = sorted(recs.values(), key=lambda r: int(r["id"].rsplit(":", 1)[1]))
    write_bytes_atomic(final, [(json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8") for rec in order])
    os.remove(partial)
    return len(order)


@dataclass
class Shard:
    path: str
    stem: str
    final: str
    partial: str
    take: int = 0          # how many of its stories this run covers (--limit)
    covered: bool = True   # all of its stories are within --limit
    done: bool = False     # the final .jsonl exists
    fd: int = -1
    pending: int = 0       # requests in flight
    failed: int = 0        # stories the server kept failing on this run
    loaded: bool = False   # every story of the shard has been handed out


def plan_shards(args, rejected):
    """First pass: validate every unfinished shard and count what there is to do (also --dry_run)."""
    shards, stats = [], dict(stories=0, chars=0, send=0, send_chars=0, copy=0, already=0,
                             rejected_before=0, malformed=0, finished_shards=0)
    left = args.limit if args.limit is not None else None
    for path in tqdm(list_shards(args.input), desc="reading shards", unit="shard", leave=False, disable=None):
        stem = os.path.basename(path).rsplit(".", 1)[0]
        final = os.path.join(args.output, stem + ".jsonl")
        sh = Shard(path, stem, final, final + ".partial")
        shards.append(sh)
        if os.path.exists(final):
            sh.done = True
            stats["finished_shards"] += 1
            continue
        if left == 0:
            sh.covered = False
            continue
        good, bad = load_shard(path)
        stats["malformed"] += bad
        sh.take = len(good) if left is None else min(left, len(good))
        sh.covered = sh.take == len(good)
        if left is not None:
            left -= sh.take
        done_ids = {r["id"] for r in read_records(sh.partial)}
        for pos, rec in good[:sh.take]:
            sid = f"{stem}:{pos}"
            stats["stories"] += 1
            stats["chars"] += len(rec["story"])
            if sid in done_ids:
                stats["already"] += 1
            elif sid in rejected:
                stats["rejected_before"] += 1
            elif args.skip_existing_zh and isinstance(rec.get("story_zh"), str) and rec["story_zh"].strip():
                stats["copy"] += 1
            else:
                stats["send"] += 1
                stats["send_chars"] += len(rec["story"].strip())
    return shards, stats

# -----------------------------------------------------------------------------
# the run


def parse_args(argv):
    p = errors.arg_parser("Translate English TinyStories shards to Chinese via an OpenAI-compatible API.", prefix=PREFIX)
    p.add_argument("--input", required=True, help="folder of English .json / .jsonl shards")
    p.add_argument("--output", required=True, help="folder for the Chinese .jsonl shards")
    p.add_argument("--api_base", default="http://127.0.0.1:8000/v1", help="OpenAI-compatible base URL, ending in /v1")
    p.add_argument("--model", default=None, help="model name the server knows")
    p.add_argument("--api_key", default=None, help="API key (default: $OPENAI_API_KEY)")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    p.add_argument("--limit", type=int, default=None, help="only the first N stories of the input (sorted shards)")
    p.add_argument("--glossary", default=None, help="JSON or TSV file of name renderings, added to the built-in ones")
    p.add_argument("--prompt_file", default=None, help="file with a system prompt replacing the default")
    p.add_argument("--temperature", type=float, default=0.3)
    p.add_argument("--max_tokens", type=int, default=2048, help="reply token cap sent to the server (0: do not send)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for one reply")
    p.add_argument("--max_retries", type=int, default=5, help="retries per story before giving up on it")
    p.add_argument("--backoff_base", type=float, default=1.0, help="first retry delay in seconds, doubled each time")
    p.add_argument("--backoff_max", type=float, default=60.0, help="longest retry delay in seconds")
    p.add_argument("--skip_existing_zh", action="store_true", help="copy stories that already have story_zh instead of sending them")
    p.add_argument("--dry_run", action="store_true", help="count stories and characters, send nothing")
    args = p.parse_args(argv)
    if args.concurrency < 1:
        p.error("--concurrency must be at least 1")
    if args.limit is not None and args.limit < 0:
        p.error("--limit must be >= 0")
    if not 0.0 <= args.temperature <= 2.0:
        p.error("--temperature must be between 0 and 2")
    if not args.timeout > 0 or args.max_retries < 0 or args.backoff_base < 0 or args.backoff_max < 0 or args.max_tokens < 0:
        p.error("--timeout must be > 0; --max_retries, --backoff_base, --backoff_max, --max_tokens >= 0")
    if not args.dry_run and not args.model:
        p.error("--model is required (the name the server serves)")
    if not args.api_base.startswith(("http://", "https://")):
        p.error(f"--api_base must be an http(s) URL, got {args.api_base!r}")
    args.api_base = args.api_base.rstrip("/")
    if os.path.abspath(args.input) == os.path.abspath(args.output):
        p.error("--output must be a different folder from --input")
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        p.error(f"--output {args.output} exists and is not a folder")
    return args


def main(argv=None):
    args = parse_args(argv)
    prompt = DEFAULT_PROMPT
    if args.prompt_file:
        try:
            with open(args.prompt_file, encoding="utf-8") as f:
                prompt = f.read().strip()
        except (OSError, UnicodeDecodeError) as e:
            die(f"cannot read prompt file {args.prompt_file}: {getattr(e, 'strerror', None) or e}")
        if not prompt:
            die(f"prompt file {args.prompt_file} is empty")
    glossary = dict(GLOSSARY)
    if args.glossary:
        glossary.update(load_glossary(args.glossary))
    matcher = glossary_matcher(glossary)

    rejects_path = os.path.join(args.output, "rejects.ndjson")
    rejected = {r["id"] for r in read_records(rejects_path)}
    shards, st = plan_shards(args, rejected)
    print(f"{len(shards)} shards ({st['finished_shards']} finished), {st['stories']} stories in unfinished ones "
          f"({st['chars']} characters): {st['send']} to send ({st['send_chars']} characters), "
          f"{st['already']} done before, {st['rejected_before']} rejected before, {st['copy']} to copy (have story_zh), "
          f"{st['malformed']} malformed skipped")
    if args.dry_run:
        return 0

    api = Api(args.api_base, args.model, args.api_key or os.environ.get("OPENAI_API_KEY", ""),
              args.temperature, args.max_tokens, args.timeout, args.max_retries,
              args.backoff_base, args.backoff_max)
    if st["send"]:
        check_server(api)
    os.makedirs(args.output, exist_ok=True)
    try:  # one writer per output folder
        lock_fd = lock_folder(args.output, "another translate.py")
    except ValueError as e:
        die(str(e))
    try:
        return translate_shards(args, api, shards, st, lambda story: system_prompt(prompt, glossary, matcher, story),
                                rejected, rejects_path)
    finally:
        if lock_fd is not None:
            os.close(lock_fd)  # also drops the lock


def translate_shards(args, api, shards, st, make_prompt, rejected, rejects_path):
    """Second pass: send the stories, append results as they come back, finish shards."""
    rej_fd = open_append(rejects_path)

    t = dict(translated=0, copied=0, rejected=0, failed=0, retried=0, chars_in=0, chars_out=0,
             prompt_tokens=0, completion_tokens=0, finalized=0)
    fatal = []
    fail_streak = [0]
    streak_limit = max(4, args.concurrency)  # this many stories failing in a row: the server is down
    bar = tqdm(total=st["send"] + st["copy"], unit="story", dynamic_ncols=True, smoothing=0.05)

    def maybe_finalize(sh):
        if sh.loaded and sh.pending == 0 and sh.covered and sh.failed == 0 and not fatal and not api.stop.is_set():
            os.close(sh.fd)
            sh.fd = -1
            finalize_shard(sh.partial, sh.final)
            sh.done = True
            t["finalized"] += 1

    def handle(fut, sh, sid, rec):
        res = fut.result()
        sh.pending -= 1
        t["retried"] += res.retries
        t["prompt_tokens"] += res.prompt_tokens
        t["completion_tokens"] += res.completion_tokens
        if res.kind == "ok":
            append_record(sh.fd, {"id": sid, "story": rec["story"], "story_zh": res.text})
            t["translated"] += 1
            t["chars_in"] += len(rec["story"])
            t["chars_out"] += len(res.text)
            fail_streak[0] = 0
            bar.update(1)
        elif res.kind == "reject":
            append_record(rej_fd, {"id": sid, "shard": os.path.basename(sh.path), "reason": res.text,
                                   "story": rec["story"], "reply": res.reply})
            t["rejected"] += 1
            fail_streak[0] = 0
            bar.update(1)
        elif res.kind == "fail":
            sh.failed += 1
            t["failed"] += 1
            fail_streak[0] += 1
            if fail_streak[0] >= streak_limit and not fatal:
                fatal.append(f"{fail_streak[0]} stories in a row failed, last: {res.text}")
                api.stop.set()
        elif res.kind == "fatal" and not fatal:
            fatal.append(res.text)
            api.stop.set()
        bar.set_postfix(rejected=t["rejected"], failed=t["failed"], retried=t["retried"], refresh=False)
        maybe_finalize(sh)

    inflight = {}

    def drain(block_until):
        while len(inflight) > block_until:
            finished, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            for fut in finished:
                handle(fut, *inflight.pop(fut))

    pool = ThreadPoolExecutor(max_workers=args.concurrency)
    try:
        for sh in shards:
            if api.stop.is_set():
                break
            if sh.done:
                if os.path.exists(sh.partial):  # killed between the rename and the cleanup
                    os.remove(sh.partial)
                continue
            if sh.take == 0:
                continue
            good, _ = load_shard(sh.path)
            sh.fd = open_append(sh.partial)
            done_ids = {r["id"] for r in read_records(sh.partial)}
            for pos, rec in good[:sh.take]:
                sid = f"{sh.stem}:{pos}"
                if sid in done_ids or sid in rejected:
                    continue
                zh = rec.get("story_zh")
                if args.skip_existing_zh and isinstance(zh, str) and zh.strip():
                    append_record(sh.fd, {"id": sid, "story": rec["story"], "story_zh": zh})
                    t["copied"] += 1
                    bar.update(1)
                    continue
                drain(2 * args.concurrency - 1)  # bounded queue: stories are read as workers free up
                if api.stop.is_set():
                    break
                sh.pending += 1
                inflight[pool.submit(translate_one, api, make_prompt(rec["story"]),
                                     rec["story"].strip())] = (sh, sid, rec)
            sh.loaded = True
            maybe_finalize(sh)
        drain(0)
    except KeyboardInterrupt:
        api.stop.set()
        bar.close()
        print(f"{PREFIX}interrupted; finished stories are saved, run the same command to continue", file=sys.stderr)
        os._exit(130)  # worker threads may sit in a long read; everything done is already fsynced
    pool.shutdown(wait=True)
    bar.close()
    for sh in shards:
        if sh.fd >= 0:
            os.close(sh.fd)
    os.close(rej_fd)

    print(f"done: {t['translated']} translated, {t['copied']} copied, {st['already']} done before; "
          f"{t['rejected']} rejected (see {rejects_path}), {t['failed']} failed, {t['retried']} retries; "
          f"{t['chars_in']} English -> {t['chars_out']} Chinese characters; "
          f"tokens: {t['prompt_tokens']} prompt + {t['completion_tokens']} completion; "
          f"{t['finalized']} shards finished now, "
          f"{sum(sh.done for sh in shards)}/{len(shards)} in all")
    unfinished = [os.path.basename(sh.partial) for sh in shards if not sh.done and not sh.covered and sh.take]
    if unfinished:
        print(f"left partial because of --limit: {', '.join(unfinished)} (run without --limit to finish)")
    if fatal:
        die(f"stopped: {fatal[0]}; finished stories are saved, run the same command to continue")
    if t["failed"]:
        die(f"{t['failed']} stories failed after {args.max_retries} retries (server errors); run the same command to retry them")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except OSError as e:  # the output folder cannot be written (permissions, full disk, a folder in a file's place)
        die(f"{e.strerror}: {e.filename}" if e.filename else str(e))
    except KeyboardInterrupt:
        errors.interrupted(prefix=PREFIX)
