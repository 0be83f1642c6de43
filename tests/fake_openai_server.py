"""
A small OpenAI chat-completions server for testing translate.py: real HTTP on 127.0.0.1,
deterministic "translations", and faults on demand. It is the remote peer, not a mock of
our code: translate.py talks to it exactly as it talks to vLLM or a hosted API.

    python tests/fake_openai_server.py --port 8000          # serve until Ctrl-C

In tests: `srv = start_server(faults=[("Lily", ["429", "500"])])`, then point translate.py at
srv.base_url; `srv.log` lists every request; `stop_server(srv)` when done.

A fault rule is (substring, behaviours): a story containing the substring gets the listed
behaviours on its 1st, 2nd, ... request and normal replies after that; a behaviour ending in
"*" repeats forever. Behaviours: ok, 429, 500, 503, 400, 401, slow (reply after `slow_s`),
malformed (broken JSON), length (half a reply, finish_reason=length), echo (the English back),
english (an English sentence), empty, drop (close the connection without answering).
"""
import argparse
import json
import re
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PUNCT = {".": "。", ",": "，", "!": "！", "?": "？", ";": "；", ":": "："}
DIGITS = dict(zip("0123456789", "〇一二三四五六七八九"))


def fake_translate(english, names=None):
    """Deterministic stand-in for a translation: each English word becomes one CJK character,
    names in the glossary their given rendering, punctuation its Chinese form."""
    names = names or {}
    out = []
    for tok in re.findall(r"[A-Za-z']+|[0-9]|[.,!?;:]|\n", english):
        if tok in names:
            out.append(names[tok])
        elif tok in PUNCT or tok in DIGITS:
            out.append(PUNCT.get(tok) or DIGITS[tok])
        elif tok == "\n":
            out.append("\n")
        else:
            out.append(chr(0x4E00 + zlib.crc32(tok.lower().encode()) % 20000))
    return "".join(out).strip()


def names_in_prompt(system):
    # translate.py lists the names a story uses as "English → 中文" lines in the system prompt
    return dict(re.findall(r"^\s*([A-Za-z][\w' .-]*?)\s*→\s*(\S+)\s*$", system, flags=re.M))


@dataclass
class FakeServer:
    faults: list = field(default_factory=list)   # [(substring, [behaviour, ...])]
    delay: float = 0.0                            # every reply waits this long (for kill tests)
    slow_s: float = 2.0                           # how long a "slow" reply waits
    retry_after: str = "1"                        # Retry-After header of a 429 (None: no header)
    log: list = field(default_factory=list)       # one dict per chat request
    counts: dict = field(default_factory=dict)    # story -> requests seen
    lock: threading.Lock = field(default_factory=threading.Lock)
    httpd: object = None
    base_url: str = ""

    def behaviour(self, story):
        with self.lock:
            n = self.counts.get(story, 0)
            self.counts[story] = n + 1
        for sub, plan in self.faults:
            if sub in story and plan:
                if n < len(plan):
                    return plan[n].rstrip("*")
                if plan[-1].endswith("*"):
                    return plan[-1].rstrip("*")
                return "ok"
        return "ok"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

    def log_message(self, *args):
        pass

    def send(self, status, body, headers=None):
        data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.rstrip("/").endswith("/models"):
            self.send(200, {"object": "list", "data": [{"id": "fake-translator", "object": "model"}]})
        else:
            self.send(404, {"error": {"message": "not found"}})

    def do_POST(self):
        srv = self.server.state
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self.send(404, {"error": {"message": "not found"}})
            return
        try:
            req = json.loads(body)
            msgs = req["messages"]
            system = next((m["content"] for m in msgs if m["role"] == "system"), "")
            story = [m["content"] for m in msgs if m["role"] == "user"][-1]
        except (ValueError, KeyError, IndexError, TypeError):
            self.send(400, {"error": {"message": "bad request"}})
            return
        what = srv.behaviour(story)
        with srv.lock:
            srv.log.append(dict(t=time.time(), story=story, system=system, behaviour=what,
                                model=req.get("model"), temperature=req.get("temperature"),
                                max_tokens=req.get("max_tokens"), auth=self.headers.get("Authorization")))
        if srv.delay:
            time.sleep(srv.delay)
        if what == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if what in ("429", "500", "503", "400", "401"):
            headers = {"Retry-After": srv.retry_after} if what == "429" and srv.retry_after is not None else {}
            self.send(int(what), {"error": {"message": f"fake {what}"}}, headers)
            return
        if what == "malformed":
            self.send(200, b'{"choices": [{"message": {"content": "\xe4\xbd')
            return
        if what == "slow":
            time.sleep(srv.slow_s)
        zh = fake_translate(story, names_in_prompt(system))
        finish = "stop"
        content = {"echo": story, "english": "Sorry, here is the story again in other words.",
                   "empty": ""}.get(what, zh)
        if what == "length":
            content, finish = zh[: len(zh) // 2], "length"
        reply = {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                 "model": req.get("model"),
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                              "finish_reason": finish}],
                 "usage": {"prompt_tokens": (len(system) + len(story)) // 4,
                           "completion_tokens": len(content),
                           "total_tokens": (len(system) + len(story)) // 4 + len(content)}}
        try:
            self.send(200, reply)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and went away


def start_server(port=0, **kw):
    srv = FakeServer(**kw)
    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    httpd.daemon_threads = True
    httpd.state = srv
    srv.httpd = httpd
    srv.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    threading.Thread(target=httpd.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True).start()
    return srv


def stop_server(srv):
    srv.httpd.shutdown()
    srv.httpd.server_close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--fault", action="append", default=[],
                    help="SUBSTRING=B1,B2,... e.g. 'Lily=429,500' or '=echo*' for every story")
    a = ap.parse_args()
    faults = [(f.split("=", 1)[0], f.split("=", 1)[1].split(",")) for f in a.fault]
    s = start_server(a.port, faults=faults, delay=a.delay)
    print(f"serving chat completions at {s.base_url}")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stop_server(s)
