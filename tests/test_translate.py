"""Tests for translate.py against a real chat-completions HTTP server on 127.0.0.1 that
translates deterministically and misbehaves on demand (tests/fake_openai_server.py)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import translate  # noqa: E402
from fake_openai_server import fake_translate, start_server, stop_server  # noqa: E402

FAST = ["--backoff_base", "0.01", "--backoff_max", "0.05", "--timeout", "5"]


def english(i, name="Lily"):
    return (f"Once upon a time, there was a girl named {name}. She found {i} red balls in the park. "
            f"\"Look, Mom!\" she said. Her mom smiled and they played until story {i} ended.")


def write_json(path, stories, **extra):
    path.write_text(json.dumps([dict(story=s, **extra) for s in stories]), encoding="utf-8")


def write_jsonl(path, records, bad_lines=()):
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
        for b in bad_lines:
            f.write(b + "\n")


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def expected_zh(story):
    return fake_translate(story.strip(), translate.GLOSSARY)


@pytest.fixture
def server():
    srv = start_server()
    yield srv
    stop_server(srv)


def run_main(inp, out, srv_url, *extra):
    return translate.main(["--input", str(inp), "--output", str(out), "--api_base", srv_url,
                           "--model", "fake-translator", *FAST, *extra])


def run_cli(*args, env=None, timeout=60):
    return subprocess.run([sys.executable, str(ROOT / "translate.py"), *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)


def two_shards(tmp_path, n0=5, n1=4):
    inp = tmp_path / "en"
    inp.mkdir()
    s0 = [english(i) for i in range(n0)]
    s1 = [english(100 + i, name="Tom") for i in range(n1)]
    write_json(inp / "data00.json", s0, instruction={"words": ["ball"]}, source="GPT-4")
    write_jsonl(inp / "data01.jsonl", [{"story": s} for s in s1],
                bad_lines=["{not json", json.dumps({"text": "no story field"}), json.dumps([1, 2])])
    return inp, s0, s1


def test_normal_run_writes_shards(tmp_path, server, capsys):
    inp, s0, s1 = two_shards(tmp_path)
    out = tmp_path / "zh"
    assert run_main(inp, out, server.base_url, "--api_key", "sk-test", "--temperature", "0.7", "--concurrency", "3") == 0
    printed = capsys.readouterr().out
    assert "3 malformed skipped" in printed and "9 translated" in printed and "0 rejected" in printed

    assert sorted(os.listdir(out)) == [".lock", "data00.jsonl", "data01.jsonl", "rejects.ndjson"]
    for shard, stories in (("data00", s0), ("data01", s1)):
        recs = read_jsonl(out / f"{shard}.jsonl")
        assert [r["id"] for r in recs] == [f"{shard}:{i}" for i in range(len(stories))]
        assert [r["story"] for r in recs] == stories
        assert [r["story_zh"] for r in recs] == [expected_zh(s) for s in stories]
    # the glossary reached the server: names rendered the built-in way
    assert "莉莉" in read_jsonl(out / "data00.jsonl")[0]["story_zh"]
    assert "汤姆" in read_jsonl(out / "data01.jsonl")[0]["story_zh"]
    assert "Lily → 莉莉" in server.log[0]["system"] and "Tom → 汤姆" not in server.log[0]["system"]
    assert all(e["auth"] == "Bearer sk-test" and e["model"] == "fake-translator"
               and e["temperature"] == 0.7 and e["max_tokens"] == 2048 for e in server.log)
    assert len(server.log) == 9

    # a second run finds everything done: sends nothing, rewrites nothing
    before = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in out.glob("data*.jsonl")}
    assert run_main(inp, out, server.base_url) == 0
    assert len(server.log) == 9
    assert before == {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in out.glob("data*.jsonl")}


def test_every_fault_is_retried_and_output_is_right(tmp_path, server, capsys):
    faults = {"story 0 ": ["429", "500"], "story 1 ": ["503", "malformed"], "story 2 ": ["length", "echo"],
              "story 3 ": ["empty", "english"], "story 4 ": ["drop", "slow"], "story 5 ": ["400"]}
    server.faults = list(faults.items())
    server.retry_after, server.slow_s = "0.1", 2.0
    inp = tmp_path / "en"
    inp.mkdir()
    stories = [english(i) for i in range(8)]
    write_json(inp / "data00.json", stories)
    out = tmp_path / "zh"
    assert run_main(inp, out, server.base_url, "--timeout", "0.5", "--max_retries", "3") == 0
    recs = read_jsonl(out / "data00.jsonl")
    assert [r["story_zh"] for r in recs] == [expected_zh(s) for s in stories]
    n_faults = sum(len(v) for v in faults.values())
    assert len(server.log) == len(stories) + n_faults
    assert f"{n_faults} retries" in capsys.readouterr().out
    assert read_jsonl(out / "rejects.ndjson") == []


def test_retry_after_is_honoured(tmp_path, server):
    server.faults = [("", ["429"])]
    server.retry_after = "1"
    inp = tmp_path / "en"
    inp.mkdir()
    write_json(inp / "data00.json", [english(0)])
    assert run_main(inp, tmp_path / "zh", server.base_url) == 0
    assert [e["behaviour"] for e in server.log] == ["429", "ok"]
    assert server.log[1]["t"] - server.log[0]["t"] >= 0.95  # backoff alone would be ~0.01 s


def test_persistent_bad_replies_go_to_rejects(tmp_path, server, capsys):
    bad = {"story 1 ": "echo*", "story 2 ": "length*", "story 3 ": "english*", "story 4 ": "empty*",
           "story 5 ": "malformed*", "story 6 ": "400*"}
    server.faults = [(k, [v]) for k, v in bad.items()]
    inp = tmp_path / "en"
    inp.mkdir()
    stories = [english(i) for i in range(8)]
    write_json(inp / "data00.json", stories)
    out = tmp_path / "zh"
    assert run_main(inp, out, server.base_url, "--max_retries", "2") == 0
    assert "6 rejected" in capsys.readouterr().out
    rej = {r["id"]: r for r in read_jsonl(out / "rejects.ndjson")}
    assert sorted(rej) == [f"data00:{i}" for i in range(1, 7)]
    reasons = {i: rej[f"data00:{i}"]["reason"] for i in range(1, 7)}
    assert "echo" in reasons[1] and "length" in reasons[2] and "not Chinese" in reasons[3]
    assert "empty" in reasons[4] and "malformed" in reasons[5] and "400" in reasons[6]
    assert rej["data00:1"]["story"] == stories[1] and rej["data00:1"]["reply"] == stories[1]
    assert all(server.counts[s.strip()] == 3 for s in stories[1:7])  # 1 try + 2 retries each
    # the shard is finished with the good stories; a rerun does not resend the rejected ones
    assert [r["id"] for r in read_jsonl(out / "data00.jsonl")] == ["data00:0", "data00:7"]
    n = len(server.log)
    assert run_main(inp, out, server.base_url) == 0
    assert len(server.log) == n


def test_server_failing_stops_the_run_and_rerun_finishes(tmp_path, server, capsys):
    inp, s0, s1 = two_shards(tmp_path)
    out = tmp_path / "zh"
    server.faults = [("", ["500*"])]
    with pytest.raises(SystemExit) as e:
        run_main(inp, out, server.base_url, "--max_retries", "1", "--concurrency", "2")
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "in a row failed" in err and "HTTP 500" in err and "Traceback" not in err
    assert not (out / "data00.jsonl").exists()  # nothing is finished, nothing is rejected
    assert read_jsonl(out / "rejects.ndjson") == []
    server.faults = []
    assert run_main(inp, out, server.base_url) == 0
    assert [r["story_zh"] for r in read_jsonl(out / "data00.jsonl")] == [expected_zh(s) for s in s0]
    assert [r["story_zh"] for r in read_jsonl(out / "data01.jsonl")] == [expected_zh(s) for s in s1]


def test_bad_api_key_is_a_one_line_error(tmp_path, server, capsys):
    inp, _, _ = two_shards(tmp_path)
    server.faults = [("", ["401*"])]
    with pytest.raises(SystemExit) as e:
        run_main(inp, tmp_path / "zh", server.base_url)
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("translate.py: error:") and "API key" in err


def wait_for(cond, timeout=30):
    t0 = time.time()
    while not cond():
        if time.time() - t0 > timeout:
            raise AssertionError("timed out waiting")
        time.sleep(0.005)


def count_lines(path):
    try:
        return Path(path).read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_sigkill_then_rerun_gives_each_story_exactly_once(tmp_path, server):
    server.delay = 0.1  # slow enough to kill mid-way
    inp = tmp_path / "en"
    inp.mkdir()
    s0 = [english(i) for i in range(24)]
    s1 = [english(200 + i, name="Ben") for i in range(24)]
    write_json(inp / "data00.json", s0)
    write_jsonl(inp / "data01.jsonl", [{"story": s} for s in s1])
    out = tmp_path / "zh"
    args = [sys.executable, str(ROOT / "translate.py"), "--input", str(inp), "--output", str(out),
            "--api_base", server.base_url, "--model", "m", "--concurrency", "3", *FAST]

    def start():
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    # kill 1: in the middle of the first shard, then fake a record torn by the kill
    p = start()
    wait_for(lambda: count_lines(out / "data00.jsonl.partial") >= 5)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (out / "data00.jsonl").exists()
    with open(out / "data00.jsonl.partial", "ab") as f:
        f.write('{"id": "data00:23", "story": "Once upon'.encode())

    # kill 2: after the first shard is finished, in the middle of the second
    p = start()
    wait_for(lambda: (out / "data00.jsonl").exists() and count_lines(out / "data01.jsonl.partial") >= 3)
    p.send_signal(signal.SIGKILL)
    p.wait()
    final0 = out / "data00.jsonl"
    stamp = (final0.stat().st_mtime_ns, final0.stat().st_ino, final0.read_bytes())
    assert not (out / "data01.jsonl").exists()

    p = start()
    assert p.wait(timeout=60) == 0
    assert (final0.stat().st_mtime_ns, final0.stat().st_ino, final0.read_bytes()) == stamp
    assert sorted(os.listdir(out)) == [".lock", "data00.jsonl", "data01.jsonl", "rejects.ndjson"]
    for shard, stories in (("data00", s0), ("data01", s1)):
        recs = read_jsonl(out / f"{shard}.jsonl")
        assert [r["id"] for r in recs] == [f"{shard}:{i}" for i in range(len(stories))]  # each once
        assert [r["story_zh"] for r in recs] == [expected_zh(s) for s in stories]
    assert read_jsonl(out / "rejects.ndjson") == []

    # killed between the rename and removing the partial: the stale partial goes, the shard stays
    (out / "data01.jsonl.partial").write_text('{"id": "data01:0", "story": "x", "story_zh": "重复"}\n')
    final1 = (out / "data01.jsonl").read_bytes()
    n = len(server.log)
    assert run_main(inp, out, server.base_url) == 0
    assert not (out / "data01.jsonl.partial").exists() and (out / "data01.jsonl").read_bytes() == final1
    assert len(server.log) == n


def test_skip_existing_zh_copies_instead_of_sending(tmp_path, server):
    inp = tmp_path / "en"
    inp.mkdir()
    recs = [{"story": english(i), "story_zh": f"已有的译文{i}。"} if i % 2 else {"story": english(i)} for i in range(6)]
    recs[3]["story_zh"] = "   "  # blank counts as missing
    write_jsonl(inp / "data00.jsonl", recs)
    out = tmp_path / "zh"
    assert run_main(inp, out, server.base_url, "--skip_existing_zh") == 0
    got = read_jsonl(out / "data00.jsonl")
    assert [r["story_zh"] for r in got] == ["已有的译文1。" if i == 1 else "已有的译文5。" if i == 5 else expected_zh(english(i))
                                            for i in range(6)]
    assert sorted(e["story"] for e in server.log) == sorted(english(i) for i in (0, 2, 3, 4))
    # without the flag every story is sent
    assert run_main(inp, tmp_path / "zh2", server.base_url) == 0
    assert len(server.log) == 4 + 6


def test_dry_run_counts_without_calling(tmp_path):
    inp, s0, s1 = two_shards(tmp_path)
    out = tmp_path / "zh"
    # nothing listens on this port: a dry run must not try
    r = run_cli("--input", str(inp), "--output", str(out), "--api_base", "http://127.0.0.1:9/v1", "--dry_run")
    assert r.returncode == 0, r.stderr
    chars = sum(len(s) for s in s0 + s1)
    assert f"9 stories in unfinished ones ({chars} characters): 9 to send" in r.stdout
    assert "3 malformed skipped" in r.stdout
    assert not out.exists()


def test_limit_leaves_the_cut_shard_partial_and_rerun_completes(tmp_path, server, capsys):
    inp, s0, s1 = two_shards(tmp_path)
    out = tmp_path / "zh"
    assert run_main(inp, out, server.base_url, "--limit", "3") == 0
    assert "left partial because of --limit: data00.jsonl.partial" in capsys.readouterr().out
    assert not (out / "data00.jsonl").exists() and count_lines(out / "data00.jsonl.partial") == 3
    assert run_main(inp, out, server.base_url) == 0
    assert [r["story_zh"] for r in read_jsonl(out / "data00.jsonl")] == [expected_zh(s) for s in s0]
    assert len(read_jsonl(out / "data01.jsonl")) == len(s1)
    assert len(server.log) == len(s0) + len(s1)


def test_glossary_file_and_prompt_file(tmp_path, server):
    inp = tmp_path / "en"
    inp.mkdir()
    story = "Lily and her cat Whiskers met Ben. Whiskers purred."
    write_json(inp / "data00.json", [story])
    (tmp_path / "names.tsv").write_text("# my names\nLily\t丽丽\nWhiskers\t胡须\n", encoding="utf-8")
    (tmp_path / "prompt.txt").write_text("把下面的故事翻译成简体中文。", encoding="utf-8")
    out = tmp_path / "zh"
    assert run_main(inp, out, server.base_url, "--glossary", str(tmp_path / "names.tsv"),
                    "--prompt_file", str(tmp_path / "prompt.txt")) == 0
    zh = read_jsonl(out / "data00.jsonl")[0]["story_zh"]
    assert zh.startswith("丽丽") and zh.count("胡须") == 2 and "本" in zh
    system = server.log[0]["system"]
    assert system.startswith("把下面的故事翻译成简体中文。") and "Ben → 本" in system
    # the JSON form works too
    (tmp_path / "names.json").write_text(json.dumps({"Whiskers": "小胡子"}), encoding="utf-8")
    assert run_main(inp, tmp_path / "zh2", server.base_url, "--glossary", str(tmp_path / "names.json")) == 0
    assert "小胡子" in read_jsonl(tmp_path / "zh2" / "data00.jsonl")[0]["story_zh"]


def test_reply_checks():
    en = "The little dog ran to the big tree and barked at the bird."
    assert translate.reply_problem(en, "小狗跑到大树下，对着小鸟叫。", "stop") is None
    assert translate.reply_problem(en, "莉莉说：“OK！”她很开心。", "stop") is None  # a little Latin is fine
    assert "empty" in translate.reply_problem(en, "", "stop")
    assert "length" in translate.reply_problem(en, "小狗跑到", "length")
    assert "echo" in translate.reply_problem(en, "翻译：The little dog ran to the big tree and barked at the bird.", "stop")
    assert "not Chinese" in translate.reply_problem(en, "A dog ran to a tree. 小狗", "stop")
    assert translate.clean_reply("```text\n小狗跑了。\n```") == "小狗跑了。"
    assert translate.clean_reply("<think>The user wants Chinese.</think>\n\n小狗跑了。") == "小狗跑了。"
    assert translate.retry_after_seconds("2") == 2.0 and translate.retry_after_seconds("soon") is None


@pytest.mark.parametrize("case", ["no_input", "no_shards", "bad_json", "bad_utf8", "bad_flag", "unknown_flag",
                                  "no_model", "unreachable", "bad_glossary", "same_dirs", "input_is_file",
                                  "output_is_file", "partial_is_dir"])
def test_bad_input_is_a_one_line_error(tmp_path, case):
    inp = tmp_path / "en"
    inp.mkdir()
    write_json(inp / "data00.json", [english(0)])
    base = ["--input", str(inp), "--output", str(tmp_path / "zh"), "--api_base", "http://127.0.0.1:9/v1", "--model", "m"]
    if case == "no_input":
        base[1] = str(tmp_path / "missing")
    elif case == "no_shards":
        (inp / "data00.json").unlink()
        (inp / "notes.txt").write_text("hello")
    elif case == "bad_json":
        (inp / "data01.json").write_text(json.dumps([{"story": "x"}])[:-3])
    elif case == "bad_utf8":
        (inp / "data01.json").write_bytes(b'[{"story": "\xff\xfe"}]')
    elif case == "bad_flag":
        base += ["--concurrency", "0"]
    elif case == "unknown_flag":
        base += ["--colour", "blue"]
    elif case == "no_model":
        base = base[:-2]
    elif case == "bad_glossary":
        (tmp_path / "g.tsv").write_text("Lily 莉莉\n", encoding="utf-8")
        base += ["--glossary", str(tmp_path / "g.tsv")]
    elif case == "same_dirs":
        base[3] = str(inp)
    elif case == "input_is_file":
        base[1] = str(inp / "data00.json")
    elif case == "output_is_file":  # these three used to end in an OSError traceback
        (tmp_path / "zh").write_text("not a folder")
    elif case == "partial_is_dir":
        (tmp_path / "zh" / "data00.jsonl.partial").mkdir(parents=True)
    r = run_cli(*base)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("translate.py: error:"), r.stderr
    assert "Traceback" not in r.stderr
    if case in ("bad_json", "bad_utf8"):
        assert "data01.json" in lines[0]
    if case == "unreachable":
        assert "cannot reach" in lines[0]
    if case in ("input_is_file", "output_is_file", "partial_is_dir"):
        assert {"input_is_file": "is a file", "output_is_file": "not a folder",
                "partial_is_dir": "data00.jsonl.partial"}[case] in lines[0]
