"""instruct.py: instructions derived from stories, the checker, the SFT shards and their stream."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import sentencepiece as spm

from conftest import ROOT
import instruct

# real Chinese that is not stories: the README's Chinese paragraphs, and prose of other kinds
NOT_STORIES = [
    "今天上午，市政府召开新闻发布会，介绍了今年第一季度的经济运行情况。数据显示，全市生产总值同比增长百分之五。",
    "把面粉和水按二比一的比例混合，揉成面团，盖上保鲜膜醒二十分钟。然后切成小块，擀成薄片。",
    "深度学习是机器学习的一个分支。这种方法叫做神经网络，它由很多层组成。每一层都把输入变换成新的表示。",
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
    "他叫了一声。她叫他回家吃饭。没有人回答。",
    "叫叫叫叫叫。。。！！！",
    "“”“”", "", "。", "a b c", "从前" * 200,
]


def readme_paragraphs():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [p for p in text.split("\n\n") if len(re.findall(r"[\u4e00-\u9fff]", p)) > 20]


def assert_grounded(c, story):
    """Every constraint of c is in the story: nothing invented."""
    assert c["hero"] in story, (c, story)
    if c["name"]:
        assert c["name"] in story
    for w in c["words"]:
        assert w in story, (w, story)
        assert w in c["instruction"]
    if c["first"]:
        assert story.startswith(c["first"])
    if c["dialogue"]:
        assert re.search("“[^”]+”", story)
    assert c["hero"] in c["instruction"] and instruct.check(story, c) == []


def test_every_pair_of_the_sample_corpus_is_grounded(zh_stories):
    stats = {}
    pairs = list(instruct.iter_pairs(zh_stories, stats))
    assert stats["stories"] == len(zh_stories)
    assert len(pairs) >= 0.95 * len(zh_stories), stats  # the target for the sample corpus
    for c, story in pairs:
        assert_grounded(c, story)
    # the wording varies, and so do the words: the model must read the instruction
    assert len({c["instruction"].split("“")[0][:6] for c, _ in pairs}) >= 5
    assert len({w for c, _ in pairs for w in c["words"]}) >= 100
    assert sum(c["first"] is not None for c, _ in pairs) > 0 and sum(c["dialogue"] for c, _ in pairs) > 0


def test_heroes_are_names_or_kinds():
    c = instruct.derive("从前，有一个小女孩叫莉莉。莉莉喜欢风筝。一天，莉莉在公园里放风筝。"
                        "风筝飞得很高。莉莉笑了。莉莉回家了。")
    assert c["name"] == "莉莉" and c["hero"] == "莉莉"
    c = instruct.derive("从前，有一只可爱的小狗。小狗住在院子里。有一天，小狗找到了一根骨头。"
                        "小狗把骨头埋在花园里。晚上，小狗睡得很香。")
    assert c["name"] is None and c["kind"] == ("一只", "小狗") and "一只小狗" in c["instruction"]
    c = instruct.derive("有一个名叫汤姆的小男孩。汤姆喜欢画画。星期六，汤姆画了一只大象。"
                        "妈妈说：“画得真好！”汤姆很开心。")
    assert c["name"] == "汤姆"


def test_real_non_story_text_never_invents_constraints():
    texts = NOT_STORIES + readme_paragraphs()
    assert len(texts) > len(NOT_STORIES) + 3
    stats = {}
    for c, text in instruct.iter_pairs(texts, stats, split=None):
        assert_grounded(c, text)
    assert stats["stories"] == len(texts) and stats["skipped"] >= len(NOT_STORIES) - 1
    for t in ["他叫了一声。她叫他回家吃饭。没有人回答。", "床前明月光，疑是地上霜。举头望明月，低头思故乡。"]:
        assert instruct.derive(t, split=None) is None  # no hero: no instruction


def test_check_names_each_broken_constraint():
    c = dict(hero="莉莉", words=["风筝", "公园"], dialogue=True, first="从前，有一个小女孩叫莉莉。")
    good = "从前，有一个小女孩叫莉莉。莉莉在公园里说：“我的风筝！”她跑了过去。莉莉很开心。"
    assert instruct.check(good, c) == []
    assert instruct.check(good, c, ended=False) == ["eos"]
    bad = "有一天，小明在家里。他很开心。他睡觉了。后来他醒了。莉莉来了。"
    assert instruct.check(bad, c) == ["hero", "word:风筝", "word:公园", "dialogue", "first"]
    # the hero must last: present at the start only is not enough
    gone = "莉莉在公园里放风筝。“好高！”她说。一只小鸟飞来。小鸟唱歌。小鸟飞走了。天黑了。大家回家了。"
    assert instruct.check(gone, c | dict(first=None)) == ["hero"]


def test_heldout_pairs_never_in_training_instructions(zh_stories):
    train = [c for c, _ in instruct.iter_pairs(zh_stories[:500], {}, split="train")]
    held = [c for c, _ in instruct.iter_pairs(zh_stories[500:1000], {}, split="heldout")]
    assert len(held) > 20
    assert not any(instruct.heldout_pair(c["hero"], w) for c in train for w in c["words"])
    assert all(instruct.heldout_pair(c["hero"], w) for c in held for w in c["words"])


def test_render_and_chat_template_agree():
    import jinja2
    text = instruct.render(" 讲一个故事。 ")
    assert text == "[INST] 讲一个故事。 [/INST]"
    msgs = [{"role": "user", "content": " 讲一个故事。 "}]
    for template in (instruct.TEMPLATE, "{{x}} <|user|>{instruction}{% raw %}\n"):
        t = jinja2.Environment().from_string(instruct.chat_template(template))
        assert t.render(bos_token="<s>", eos_token="</s>", messages=msgs) == "<s>" + instruct.render(" 讲一个故事。 ", template)


@pytest.fixture(scope="module")
def sft_root(tmp_path_factory, zh_stories, sp_model):
    root = tmp_path_factory.mktemp("sft")
    src = root / "TinyStories_all_data"
    src.mkdir()
    for s in range(3):
        with open(src / f"data{s:02d}.jsonl", "w", encoding="utf-8") as f:
            for story in zh_stories[s * 200:(s + 1) * 200]:
                f.write(json.dumps({"story_zh": story}, ensure_ascii=False) + "\n")
    (root / "tok512.model").write_bytes(open(sp_model, "rb").read())
    p = subprocess.run([sys.executable, str(ROOT / "instruct.py"), "pretokenize", "--vocab_size=512",
                        f"--data_root={root}"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "instruction/story pairs from 600 stories" in p.stdout
    return root


def test_shards_hold_prompt_then_story(sft_root, zh_stories):
    sp = spm.SentencePieceProcessor(model_file=str(sft_root / "tok512.model"))
    tokens, starts, story, ends = instruct.read_shard(str(sft_root / "sft512" / "data01.bin"))
    assert len(starts) >= 190
    pairs = list(instruct.iter_pairs(zh_stories[200:400], {}))
    for (c, text), a, b, e in zip(pairs, starts, story, ends):
        t = tokens[a:e].tolist()
        assert t[0] == sp.bos_id() and t[-1] == sp.eos_id() and sp.bos_id() not in t[1:]
        assert sp.decode(t[1:b - a]) == instruct.render(c["instruction"])
        assert sp.decode(t[b - a:-1]) == text


def test_stream_masks_the_prompt_and_resumes(sft_root):
    import torch
    s = instruct.SFTStream("train", 8, 1023, 512, data_root=str(sft_root), seed=3)
    assert len(s.examples) > 300
    x, y = s.next_batch("cpu")
    assert x.shape == y.shape and x.shape[0] == 8
    for r in range(8):
        shard, a, b, e = s.examples[int(s._order()[r])]
        t = torch.from_numpy(s.maps[shard][a:e].astype(np.int64))
        n = e - a
        assert torch.equal(x[r, :n - 1], t[:-1])
        assert (y[r, :b - a - 1] == -1).all() and (y[r, n - 1:] == -1).all()  # prompt and padding ignored
        assert torch.equal(y[r, b - a - 1:n - 1], t[b - a:])  # story and EOS predicted
    state = s.state_dict()
    want = [s.next_batch("cpu") for _ in range(60)]  # crosses an epoch
    assert s.epoch >= 1
    t = instruct.SFTStream("train", 8, 1023, 512, data_root=str(sft_root), seed=0)
    t.load_state_dict(state)
    for (wx, wy) in want:
        gx, gy = t.next_batch("cpu")
        assert torch.equal(wx, gx) and torch.equal(wy, gy)
    short = instruct.SFTStream("train", 8, 300, 512, data_root=str(sft_root))
    assert short.dropped > 0 and all(e - a <= 301 for _, a, _, e in short.examples)


def test_cli_errors_are_one_line(tmp_path):
    for args in (["pretokenize", "--vocab_size=512", f"--data_root={tmp_path}"],
                 ["pretokenize", "--vocab_size=0"], ["derive", f"--data_dir={tmp_path / 'none'}"]):
        p = subprocess.run([sys.executable, str(ROOT / "instruct.py"), *args], capture_output=True, text=True,
                           timeout=60)
        assert p.returncode != 0 and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_run_runq_sample_and_gguf_give_the_same_story(tmp_path, sp_model):
    """One instruction, greedy: ./run -m instruct, ./runq -m instruct and sample.py --instruction print
    the same story; the GGUF's chat_template renders the same prompt, so llama.cpp is given the same
    tokens."""
    import gguf
    import jinja2
    from cbuild import binary, export, random_model, run_c
    from export import model_export
    from tokenizer import Tokenizer
    m = random_model(512, seed=5, max_seq_len=160)
    tok = Tokenizer(sp_model).export(str(tmp_path / "tok.bin"), instruct.TEMPLATE)
    instruction = "  讲一个关于小狗豆豆的故事，故事里要用到“风筝”和“公园”。\n"
    sp = spm.SentencePieceProcessor(model_file=sp_model)
    prompt = [1] + sp.encode(instruct.render(instruction))
    steps = len(prompt) + 40
    for exe, version in (("run", 0), ("runq", 2)):
        path = export(m, tmp_path / f"v{version}.bin", version)
        c = run_c(binary(exe), path, tok, "-m", "instruct", "-t", 0, "-n", steps, "-i", instruction)
        assert c.returncode == 0, c.stderr.decode()
        py = subprocess.run([sys.executable, str(ROOT / "sample.py"), f"--checkpoint={path}", f"--tokenizer={sp_model}",
                             f"--instruction={instruction}", "--temperature=0", f"--max_new_tokens={steps - len(prompt) + 1}"],
                            capture_output=True, timeout=120)
        assert py.returncode == 0, py.stderr.decode()
        story = py.stdout.decode("utf-8").removesuffix("\n---------------\n")
        assert len(story) > 10 and c.stdout.decode("utf-8") == story + "\n", exe
    # the prompt tokens run.c feeds: ./run -m tokenize of the rendered prompt is sentencepiece's
    t = run_c(binary("run"), tmp_path / "v0.bin", tok, "-m", "tokenize", "-i", instruct.render(instruction))
    assert [int(x) for x in t.stdout.split()] == prompt
    model_export(m, str(tmp_path / "m.gguf"), version="gguf", tokenizer=tok)
    r = gguf.GGUFReader(str(tmp_path / "m.gguf"))
    from gguf_fields import field_value
    template = field_value(r.fields["tokenizer.chat_template"])
    text = jinja2.Environment().from_string(template).render(
        bos_token="<s>", eos_token="</s>", messages=[{"role": "user", "content": instruction}])
    assert text.startswith("<s>") and [1] + sp.encode(text[3:]) == prompt
    # a tokenizer without a template: -m instruct says what is missing, in one line
    plain = Tokenizer(sp_model).export(str(tmp_path / "plain.bin"))
    c = run_c(binary("run"), tmp_path / "v0.bin", plain, "-m", "instruct", "-i", instruction)
    assert c.returncode != 0 and b"prompt template" in c.stderr and c.stderr.count(b"\n") == 1
