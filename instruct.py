"""
Story instructions for the second training stage (SFT): derived from any story corpus, offline.

    python3 instruct.py derive --data_root=data --show=5              # print a few instruction/story pairs
    python3 instruct.py pretokenize --vocab_size=5000 --data_root=data # data/sft5000/*.bin + *.idx
    python3 instruct.py pretokenize --vocab_size=5000 --data_dir=my_stories

For each story an instruction with constraints a program can check: the hero (the name the story
gives with 叫/名叫/…, else its kind, e.g. 一只小狗), two or three content words of the story (jieba
nouns and verbs, stopwords left out), and sometimes a feature (it has dialogue, its first sentence).
The wording is drawn from several templates. check() says which constraints a story breaks; a pair
is only kept when its own story passes, so an instruction never asks for something its story lacks.
Stories it cannot derive from are counted and skipped.

The prompt template (TEMPLATE) is Llama 2's: [BOS] "[INST] {instruction} [/INST]" story [EOS]; the
loss is on the story and its EOS only. train.py --task=sft stores it in the checkpoint, tokenizer.py
--template in the tokenizer .bin, export.py in GGUF (tokenizer.chat_template) and Hugging Face
(tokenizer_config.json).
"""

import os
import random
import re
import sys
import time
import zlib

import numpy as np

from errors import UserError, arg_parser, die, interrupted
from fileio import write_atomic

TEMPLATE = "[INST] {instruction} [/INST]"
SLOT = "{instruction}"


def render(instruction, template=TEMPLATE):
    """The prompt text for an instruction (BOS comes from the encoder)."""
    return template.replace(SLOT, instruction.strip(" \t\n\r\v\f"))  # ASCII whitespace, as run.c trims it


def chat_template(template=TEMPLATE):
    """The template as Jinja over a list of chat messages, as llama.cpp, Ollama and transformers
    read it (GGUF tokenizer.chat_template, tokenizer_config.json): BOS, each user message in the
    template, each answer followed by EOS."""
    before, after = template.split(SLOT)
    lit = lambda s: "{% raw %}" + s + "{% endraw %}" if "{" in s or "}" in s else s  # noqa: E731
    return ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
            f"{lit(before)}{{{{ message['content'] | trim }}}}{lit(after)}"
            "{% elif message['role'] == 'assistant' %}{{ message['content'] }}{{ eos_token }}{% endif %}{% endfor %}")


# -----------------------------------------------------------------------------
# sentences, heroes, words

def sentences(text):
    """Sentences ending in 。！？ (a closing quote stays with its sentence)."""
    return [s for s in re.split(r"(?<=[。！？])(?![”」])|(?<=[。！？][”」])", text) if s.strip()]


HAN = r"\u4e00-\u9fff"
# 有一个小女孩叫朵朵 / 名叫小红 / 有一个叫东东的小男孩 / 她的名字叫莉莉 / 叫做…
NAME_RE = re.compile(rf"(?:名叫|叫做|名字叫|名字是|叫)([{HAN}]{{2,3}}?)(?=[。，！？、；：,.!?的]|$)")
OPENING_NAME_RE = re.compile(rf"([{HAN}]{{2,3}}?)(?:是一|今年|有一|很|住在|每天|最喜欢|喜欢)")
NOT_SUBJECT_FLAGS = ("r", "t", "m", "d", "p", "c", "f", "u", "y")
# 有一只小狗 / 有一个可爱的小女孩 / 住着一头小象
KIND_RE = re.compile(rf"(?:有|住着|是)(一[只个头匹条位])([{HAN}]{{1,8}}?)(?=[，。！？、；：,.!?]|叫|名叫|$)")
# words that fit everywhere, so asking for them checks nothing
STOPWORDS = set("""
说 说道 问道 喊道 叫道 笑道 答道 回答 没有 知道 觉得 看到 看见 听到 一起 时候 东西 我们 你们 他们 她们 它们
自己 什么 怎么 这个 那个 这样 那样 一下 一点 一些 有点 小声 大声 开始 出来 起来 过来 回来 下来 上来 已经 然后
可以 不能 不会 没关系 喜欢 看看 想想 试试 点头 点点头 发现 决定 需要 应该 成为 变得 变成 感到 感觉 非常 真的
有些 这里 那里 哪里 今天 明天 每天 一天 从前 以后 从那以后 时间 事情 样子 地方 声音 朋友 东东西西 有人 出去 进去
""".split())
WORD_FLAGS = ("n", "nz", "ns", "nt", "vn", "v")  # nouns and verbs; not nr (other people's names)


def _jieba():
    import jieba
    import jieba.posseg
    jieba.setLogLevel(60)  # its dictionary-loading messages
    return jieba.posseg


def find_hero(story):
    """(name or None, kind or None, term): term is what must appear in the story from start to end
    (the name, else the kind's noun, e.g. 小狗 for 一只小狗). None when the story shows no hero."""
    head = "".join(sentences(story)[:2]) or story
    m = NAME_RE.search(head)
    name = m.group(1) if m else None
    if name and (name in STOPWORDS or story.count(name) < 2):
        name = None  # 叫他回家 / 叫了一声: no name; a name said once is no hero
    if not name:  # 杰克今年三岁了 / 米娅是一只小兔子: a story that opens with its hero's name
        m = OPENING_NAME_RE.match(story)
        word = m and next(iter(_jieba().cut(m.group(1), HMM=False)))
        # a subject that is no pronoun or time word (她是…, 今天…), and said again and again
        if word and (word.flag not in NOT_SUBJECT_FLAGS or word.word != m.group(1)) and m.group(1) not in STOPWORDS and story.count(m.group(1)) >= 3:
            name = m.group(1)
    k = KIND_RE.search(head)
    kind = None
    if k:
        words = [w for w in _jieba().cut(k.group(2), HMM=False)]
        nouns = [w.word for w in words if w.flag.startswith("n") and len(w.word) >= 2]
        if nouns:
            kind = (k.group(1), nouns[-1])  # the head noun: 可爱的小女孩 -> 小女孩
    if name:
        return name, kind, name
    if kind and story.count(kind[1]) >= 2:
        return None, kind, kind[1]
    return None


def content_words(story, avoid=()):
    """The story's content words that can be asked for: jieba nouns and verbs of 2-4 Chinese
    characters, no stopwords, nothing inside or around the hero's name; (nouns, verbs) in story order."""
    seen, nouns, verbs = set(), [], []
    for w in _jieba().cut(story, HMM=False):
        word = w.word
        if word in seen or not 2 <= len(word) <= 4 or not re.fullmatch(f"[{HAN}]+", word):
            continue
        seen.add(word)
        if w.flag not in WORD_FLAGS or word in STOPWORDS or any(a and (a in word or word in a) for a in avoid):
            continue
        (verbs if w.flag == "v" else nouns).append(word)
    return nouns, verbs


def heldout_pair(hero, word):
    """A fixed eighth of (hero, word) pairs never appears in training instructions: the benchmark
    asks for those, so the model must combine a hero and a word it was never told to combine."""
    return zlib.crc32(f"{hero}|{word}".encode("utf-8")) % 8 == 0


# -----------------------------------------------------------------------------
# instructions

def _quote(words):
    q = [f"“{w}”" for w in words]
    return q[0] if len(q) == 1 else "、".join(q[:-1]) + "和" + q[-1]


def _hero_phrase(c, rng):
    name, kind = c["name"], c["kind"]
    if name:
        options = [name] + ([f"{kind[0]}叫{name}的{kind[1]}"] if kind else [])
        return rng.choice(options)
    return "".join(kind)


# {hero}: the hero phrase, {words}: the quoted words
WORDINGS = [
    "讲一个关于{hero}的故事，故事里要用到{words}。",
    "请写一个故事，主角是{hero}，要用上这些词：{words}。",
    "给我讲个故事吧，主人公是{hero}，故事里要有{words}。",
    "写一个小故事：{hero}，还有{words}。",
    "我想听{hero}的故事，里面要出现{words}。",
    "讲个故事，主角：{hero}。要用的词：{words}。",
]
DIALOGUE = ["故事里要有对话。", "要有人物说的话。", "故事中要有对话。"]
FIRST = ["故事的第一句是：{first}", "故事这样开头：{first}", "第一句：{first}"]


def wording(c, rng):
    """The instruction text for constraints c, in one of the wordings."""
    text = rng.choice(WORDINGS).format(hero=_hero_phrase(c, rng), words=_quote(c["words"]))
    if c["dialogue"]:
        text += rng.choice(DIALOGUE)
    if c["first"]:
        text += rng.choice(FIRST).format(first=c["first"])
    return text


def derive(story, seed=0, split="train"):
    """Constraints and an instruction for one story, or None when it has no hero, too few content
    words, or does not pass its own constraints. split: "train" never uses a held-out (hero, word)
    pair, "heldout" only those, None any pair. Deterministic in (story, seed)."""
    story = story.strip()
    hero = find_hero(story)
    if hero is None:
        return None
    name, kind, term = hero
    rng = random.Random(zlib.crc32(story.encode("utf-8")) ^ seed)
    nouns, verbs = content_words(story, avoid=(term, name))
    if split is not None:
        keep = (lambda w: heldout_pair(term, w)) if split == "heldout" else (lambda w: not heldout_pair(term, w))
        nouns, verbs = [w for w in nouns if keep(w)], [w for w in verbs if keep(w)]
    n = rng.choice([2, 2, 3])
    if len(nouns) < 2 and split != "heldout":  # things are what a story is planned around; an action
        nouns += verbs[:2 - len(nouns)]  # only when it must (never in the benchmark)
    if len(nouns) < 2:
        return None
    # the story's own topics: nouns it repeats first, then the earliest; a few more than needed, so
    # the choice still varies
    nouns.sort(key=lambda w: (story.count(w) < 2, story.find(w)))
    words = rng.sample(nouns[:n + 1], min(len(nouns), n))
    words.sort(key=story.find)  # in story order, as a writer would meet them
    sents = sentences(story)
    c = dict(name=name, kind=kind, hero=term, words=words,
             dialogue="“" in story and "”" in story and rng.random() < 0.3,
             first=sents[0] if len(sents) >= 3 and len(sents[0]) <= 40 and rng.random() < 0.15 else None)
    if check(story, c):
        return None
    c["instruction"] = wording(c, rng)
    return c


def check(story, c, ended=True):
    """The constraints of c that story breaks, as a list of short labels; [] means fully satisfied.
    hero: in the first two sentences and in the last third (at least the last three); word:W: W occurs; dialogue: “…”;
    first: the story opens with that sentence; eos: the story ended by itself (ended=False)."""
    sents = sentences(story)
    failed = []
    tail = sents[-max(3, len(sents) // 3):]
    if not sents or c["hero"] not in "".join(sents[:2]) or c["hero"] not in "".join(tail):
        failed.append("hero")
    failed += [f"word:{w}" for w in c["words"] if w not in story]
    if c.get("dialogue") and not re.search("“[^”]+”", story):
        failed.append("dialogue")
    if c.get("first") and not story.startswith(c["first"]):
        failed.append("first")
    if not ended:
        failed.append("eos")
    return failed


def iter_pairs(texts, stats, seed=0, split="train"):
    """(constraints, story) for each story that yields an instruction; the others are counted."""
    for text in texts:
        c = derive(text, seed, split)
        stats["stories"] = stats.get("stories", 0) + 1
        if c is None:
            stats["skipped"] = stats.get("skipped", 0) + 1
            continue
        yield c, text.strip()


# -----------------------------------------------------------------------------
# pretokenized pairs: data_root/sft{N}/NAME.bin (uint16 tokens) + NAME.idx (uint32 start, story start)

def encode_pair(sp, instruction, story, template=TEMPLATE):
    """[BOS] + prompt tokens + story tokens + [EOS], and where the story starts. The story is encoded
    on its own, exactly as in the pretraining shards, so the model meets the same pieces."""
    prompt = [sp.bos_id()] + sp.encode(render(instruction, template))
    return prompt + sp.encode(story) + [sp.eos_id()], len(prompt)


def _encode_file(task):
    """Worker: one source file -> its .bin and .idx; returns (pairs, stats)."""
    from tinystories import iter_documents
    import sentencepiece as spm
    src, model_path, base, seed = task
    sp = spm.SentencePieceProcessor(model_file=model_path)
    tokens, index, stats = [], [], {}
    for c, story in iter_pairs(iter_documents([src], stats), stats, seed):
        ids, story_start = encode_pair(sp, c["instruction"], story)
        index += [len(tokens), len(tokens) + story_start]
        tokens += ids
    if len(tokens) >= 1 << 32:
        raise UserError(f"{src}: more than 2^32 tokens in one shard; split the file")
    write_atomic(np.array(tokens, dtype=np.uint16).tofile, base)
    write_atomic(np.array(index, dtype=np.uint32).tofile, base[:-4] + ".idx")
    return len(index) // 2, stats


def pretokenize(vocab_size, data_root="data", data_dir=None, seed=0, num_workers=None):
    """Instruction/story pairs of every source file into {data_root}/sft{vocab_size}/NAME.bin + .idx,
    one process per file (jieba is pure Python)."""
    from tinystories import _shard_names, _source_dir
    import sentencepiece as spm
    model_path = os.path.join(data_root, f"tok{vocab_size}.model")
    if not os.path.isfile(model_path):
        raise UserError(f"{model_path} not found (run: python3 tinystories.py train_vocab --vocab_size={vocab_size})")
    if spm.SentencePieceProcessor(model_file=model_path).vocab_size() != vocab_size:
        raise UserError(f"{model_path} does not have {vocab_size} pieces")
    src_dir = data_dir or os.path.join(data_root, "TinyStories_all_data")
    files = _source_dir(data_root, data_dir)
    out_dir = os.path.join(data_root, f"sft{vocab_size}")
    os.makedirs(out_dir, exist_ok=True)
    names = _shard_names(files, src_dir)
    tasks = [(f, model_path, os.path.join(out_dir, n), seed) for f, n in zip(files, names)]
    cpus = num_workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
    t0 = time.time()
    if min(cpus, len(tasks)) > 1:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(max_workers=min(cpus, len(tasks))) as pool:
            results = list(pool.map(_encode_file, tasks))
    else:
        results = [_encode_file(t) for t in tasks]
    pairs = sum(r[0] for r in results)
    n, skipped = sum(r[1].get("stories", 0) for r in results), sum(r[1].get("skipped", 0) for r in results)
    print(f"wrote {len(files)} shards to {out_dir}: {pairs} instruction/story pairs from {n} stories, "
          f"{skipped} skipped ({100 * skipped / max(n, 1):.1f}%: no hero, too few content words) "
          f"in {time.time() - t0:.1f}s; first shard {names[0]} is the validation split")
    return pairs


def read_shard(path):
    """(tokens, starts, story_starts) of one SFT shard, checked: every example is BOS ... EOS."""
    tokens = np.memmap(path, dtype=np.uint16, mode="r") if os.path.getsize(path) else np.zeros(0, np.uint16)
    idx_path = path[:-4] + ".idx"
    if not os.path.isfile(idx_path):
        raise ValueError(f"{idx_path} is missing (run instruct.py pretokenize again)")
    index = np.fromfile(idx_path, dtype=np.uint32)
    if os.path.getsize(path) % 2 or len(index) % 2:
        raise ValueError(f"{path}: odd size, not an SFT shard")
    starts, story = index[0::2].astype(np.int64), index[1::2].astype(np.int64)
    ends = np.append(starts[1:], len(tokens))
    if len(starts) and (starts[0] != 0 or np.any(ends <= story) or np.any(story <= starts) or ends[-1] != len(tokens)):
        raise ValueError(f"{idx_path} does not fit {path} (rewritten by another run?)")
    return tokens, starts, story, ends


class SFTStream:
    """Batches of instruction/story pairs, one pair per row, padded to the longest in the batch.
    x holds the tokens, y the next tokens with -1 (ignored by the loss) on the prompt and the
    padding. Each epoch visits every pair once in a shuffled order that is a pure function of
    (seed, rank, epoch), so the state is two counters, as BatchStream's. Pairs longer than
    max_seq_len + 1 tokens are left out."""

    def __init__(self, split, batch_size, max_seq_len, vocab_size, data_root="data", seed=1337, rank=0):
        d = os.path.join(data_root, f"sft{vocab_size}")
        import glob
        shards = sorted(glob.glob(os.path.join(d, "*.bin")))
        if len(shards) < 2:
            raise FileNotFoundError(f"need at least two SFT shards in {d} (the first is the validation split): "
                                    f"run python3 instruct.py pretokenize --vocab_size={vocab_size}")
        shards = shards[:1] if split == "val" else shards[1:]
        self.examples, self.maps, self.dropped = [], [], 0
        for i, path in enumerate(shards):
            tokens, starts, story, ends = read_shard(path)
            self.maps.append(tokens)
            fits = ends - starts <= max_seq_len + 1
            self.dropped += int((~fits).sum())
            self.examples += [(i, int(a), int(b), int(e)) for a, b, e in zip(starts[fits], story[fits], ends[fits])]
        if not self.examples:
            raise ValueError(f"no {split} pair in {d} fits max_seq_len+1={max_seq_len + 1} tokens")
        self.shard_names = [os.path.basename(p) for p in shards]
        self.batch_size, self.vocab_size, self.seed, self.rank = batch_size, vocab_size, seed, rank
        self.epoch = self.pos = 0
        self._key = None

    def _order(self):
        if self._key != self.epoch:
            self._perm = np.random.default_rng([self.seed, self.rank, self.epoch]).permutation(len(self.examples))
            self._key = self.epoch
        return self._perm

    def next_batch(self, device):
        import torch
        rows = []
        while len(rows) < self.batch_size:
            shard, a, b, e = self.examples[int(self._order()[self.pos])]
            rows.append((self.maps[shard][a:e].astype(np.int64), b - a))
            self.pos += 1
            if self.pos == len(self.examples):
                self.pos, self.epoch = 0, self.epoch + 1
        T = max(len(t) for t, _ in rows) - 1
        x = np.zeros((len(rows), T), dtype=np.int64)
        y = np.full((len(rows), T), -1, dtype=np.int64)
        for r, (t, story) in enumerate(rows):
            x[r, :len(t) - 1] = t[:-1]
            y[r, story - 1:len(t) - 1] = t[story:]  # predict the story's tokens and EOS, not the prompt
        if x.max() >= self.vocab_size:
            raise ValueError(f"token id {int(x.max())} in the SFT shards is >= vocab_size={self.vocab_size}: "
                             "they were made with another vocabulary")
        return torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)

    def state_dict(self):
        return {"seed": self.seed, "rank": self.rank, "epoch": self.epoch, "pos": self.pos,
                "shards": self.shard_names, "n": len(self.examples)}

    def load_state_dict(self, d):
        self.seed, self.rank, self.epoch, self.pos = int(d["seed"]), int(d["rank"]), int(d["epoch"]), int(d["pos"])
        self._key = None
        if d.get("shards") != self.shard_names or d.get("n") != len(self.examples):
            print("warning: the SFT shards changed since the checkpoint; the data stream restarts its epoch",
                  file=sys.stderr)
            self.pos = 0


# -----------------------------------------------------------------------------
# command line

def main(argv=None):
    parser = arg_parser("story instructions: derive them from a corpus, pretokenize instruction/story pairs")
    parser.add_argument("stage", choices=["derive", "pretokenize"])
    parser.add_argument("--vocab_size", type=int, default=0, help="pretokenize: the tok{N}.model to use")
    parser.add_argument("--data_root", default="data", help="the cache folder (default: data)")
    parser.add_argument("--data_dir", default=None, help="a folder of your own .jsonl/.json/.txt/.md stories")
    parser.add_argument("--seed", type=int, default=0, help="varies the words and wordings chosen")
    parser.add_argument("--show", type=int, default=5, help="derive: how many pairs to print")
    args = parser.parse_args(argv)
    try:
        if args.stage == "pretokenize":
            if not 0 < args.vocab_size <= 65535:
                raise UserError(f"--vocab_size must be in 1..65535 (the shards are uint16), got {args.vocab_size}")
            pretokenize(args.vocab_size, args.data_root, args.data_dir, args.seed)
        else:
            from tinystories import _source_dir, iter_documents
            stats = {}
            for i, (c, story) in enumerate(iter_pairs(iter_documents(_source_dir(args.data_root, args.data_dir),
                                                                     stats), stats, args.seed)):
                if i >= args.show:
                    break
                print(f"instruction: {c['instruction']}\nstory: {story}\n")
            print(f"{stats.get('stories', 0)} stories read, {stats.get('skipped', 0)} skipped")
    except (UserError, OSError, ValueError) as e:
        die(e)
    except KeyboardInterrupt:
        interrupted()


if __name__ == "__main__":
    main()
