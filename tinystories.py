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
train.py streams batches with BatchStream (or Task.iter_batches, as the original).
"""

import argparse
import collections
import glob
import hashlib
import itertools
import json
import os
import random
import re
import shutil
import sys
import tarfile
import tempfile
import time
import zlib
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np

DATA_CACHE_DIR = "data"
HF_ENDPOINT = "https://huggingface.co"
DATASET_REPO = "adam89/TinyStoriesChinese"
DATASET_FILE = "TinyStories_all_data_zh.tar.gz"
MODEL_REPO = "adam89/tinyllamas-chinese"
MODELS = ["stories15M", "stories42M", "stories110M"]
MODEL_TOKENIZER = "tok5000.bin"
TEXT_FIELDS = ["story_zh", "text_zh", "story", "text", "content"]


class UserError(Exception):
    """A problem with the user's input or environment: reported in one line, no traceback."""


# -----------------------------------------------------------------------------
# offline sample corpus: Chinese children's stories in the TinyStories style, composed from
# characters, places, objects and a few story arcs. Pure code and seeded, so every machine
# generates the same corpus without the network.

GIRLS = ["莉莉", "小美", "安娜", "朵朵", "米娅", "小红", "露西", "艾米", "佳佳", "甜甜", "婷婷", "小雨",
         "苏菲", "妮妮", "小芳", "贝拉", "萌萌", "小月"]
BOYS = ["汤姆", "小明", "本", "杰克", "乐乐", "豆豆", "小刚", "提米", "强强", "山姆", "马克", "小宝",
        "亮亮", "东东", "小军", "麦克", "丁丁", "小虎"]
# (kind, name, measure word, home)
ANIMALS = [("小猫", "咪咪", "只", "一座小房子里"), ("小狗", "旺旺", "只", "一个大院子里"),
           ("小兔子", "白白", "只", "森林里"), ("小熊", "胖胖", "只", "大山脚下"),
           ("小鸟", "啾啾", "只", "一棵大树上"), ("小鸭子", "嘎嘎", "只", "池塘边"),
           ("小松鼠", "跳跳", "只", "一棵老橡树上"), ("小猴子", "皮皮", "只", "森林里"),
           ("小老鼠", "吱吱", "只", "一个谷仓里"), ("小青蛙", "呱呱", "只", "荷塘里"),
           ("小象", "阿宝", "头", "草原上"), ("小马", "飞飞", "匹", "农场上"),
           ("小狐狸", "红红", "只", "森林里"), ("小刺猬", "球球", "只", "花园里"),
           ("小猪", "嘟嘟", "只", "农场上"), ("小鹿", "点点", "只", "森林里"),
           ("小乌龟", "慢慢", "只", "小河边"), ("小羊", "咩咩", "只", "山坡上")]
# (noun, measure word, adjectives that fit it)
OBJECTS = [("球", "个", ["红色的", "大大的", "软软的", "蓝色的", "新"]),
           ("风筝", "只", ["彩色的", "漂亮的", "长尾巴的", "蝴蝶形状的"]),
           ("书", "本", ["有趣的", "旧旧的", "画满图画的", "厚厚的"]),
           ("娃娃", "个", ["可爱的", "穿裙子的", "软软的", "旧旧的"]),
           ("帽子", "顶", ["黄色的", "漂亮的", "大大的", "新"]),
           ("小汽车", "辆", ["红色的", "闪闪发光的", "玩具", "蓝色的"]),
           ("石头", "块", ["闪闪发光的", "光滑的", "圆圆的", "奇怪的"]),
           ("钥匙", "把", ["金色的", "小小的", "旧旧的", "闪闪发光的"]),
           ("气球", "个", ["红色的", "大大的", "黄色的", "心形的"]),
           ("贝壳", "个", ["漂亮的", "粉红色的", "亮晶晶的", "小小的"]),
           ("围巾", "条", ["温暖的", "红色的", "长长的", "毛茸茸的"]),
           ("铅笔", "支", ["彩色的", "新", "长长的", "黄色的"]),
           ("杯子", "个", ["漂亮的", "蓝色的", "小小的", "新"]),
           ("毯子", "条", ["软软的", "温暖的", "蓝色的", "旧旧的"]),
           ("小铃铛", "个", ["金色的", "闪闪发光的", "小小的", "会唱歌的"]),
           ("泰迪熊", "只", ["毛茸茸的", "棕色的", "软软的", "旧旧的"]),
           ("发卡", "个", ["亮晶晶的", "粉红色的", "漂亮的", "蝴蝶形状的"]),
           ("小船", "只", ["木头做的", "纸做的", "红色的", "小小的"])]
PLACES = ["公园里", "花园里", "海边", "森林里", "院子里", "河边", "小山坡上", "农场上", "草地上",
          "沙滩上", "湖边", "果园里", "小树林里", "操场上"]
HIDING = ["一棵大树下面", "一丛灌木后面", "一块大石头旁边", "一堆树叶里", "一张长椅下面",
          "一朵大花旁边", "一个小洞里", "草丛里", "一个旧箱子后面", "小桥下面"]
HOBBIES = ["在外面玩", "画画", "唱歌", "跑来跑去", "看图画书", "在草地上打滚", "帮妈妈做事",
           "和朋友们捉迷藏", "吃水果", "探索新的地方", "玩积木", "听故事"]
TRAITS = ["快乐", "好奇", "善良", "活泼", "勇敢", "聪明", "害羞", "调皮"]
FOODS = [("饼干", "块"), ("苹果", "个"), ("香蕉", "根"), ("蛋糕", "块"), ("糖果", "颗"),
         ("草莓", "颗"), ("三明治", "个"), ("橙子", "个"), ("葡萄", "串"), ("胡萝卜", "根")]
ADULTS = ["妈妈", "爸爸", "奶奶", "爷爷"]
NUMS = ["一", "两", "三", "四", "五"]
OPEN_TIME = ["有一天，", "一天早上，", "一个阳光明媚的下午，", "星期六，", "一天，", "一个晴朗的早晨，",
             "吃过午饭以后，", "一个温暖的下午，", "周末的时候，"]
SAY = ["说", "说道", "认真地说", "大声说"]
GLAD_SAY = ["高兴地说", "笑着说", "开心地说", "兴奋地说"]
SAD_SAY = ["难过地说", "小声说", "哭着说", "伤心地说"]
KIND_SAY = ["温柔地说", "轻轻地说", "笑着说", "安慰道"]
ASK = ["问", "问道", "轻轻地问"]
HAPPY = ["开心", "高兴", "快乐"]
ENDINGS_HAPPY = ["那天晚上，{n}睡得很香。", "从那以后，{n}每天都很快乐。", "这真是美好的一天。",
                 "{n}觉得这是最好的一天。", "太阳下山了，{n}笑着回家了。", "{n}心里暖暖的。"]


class _Slots(dict):
    """format() mapping that draws some slots fresh from the rng every time they are used."""
    def __init__(self, rng, **kw):
        super().__init__(**kw)
        self.rng = rng

    def __missing__(self, key):
        pools = {"say": SAY, "glad": GLAD_SAY, "sad": SAD_SAY, "kind": KIND_SAY, "ask": ASK, "happy": HAPPY, "time": OPEN_TIME}
        if key in pools:
            return self.rng.choice(pools[key])
        raise KeyError(key)


def _hero(rng):
    """A main character: (name, pronoun, introduction sentences, the grown-up in the story)."""
    r = rng.random()
    if r < 0.65:
        girl = rng.random() < 0.5
        n = rng.choice(GIRLS if girl else BOYS)
        who = "小女孩" if girl else "小男孩"
        ta = "她" if girl else "他"
        age = rng.choice(["三", "四", "五", "六", "七"])
        hobby = rng.choice(HOBBIES)
        trait = rng.choice(TRAITS)
        intro = rng.choice([
            f"从前，有一个{who}叫{n}。{ta}喜欢{hobby}。",
            f"从前，有一个{trait}的{who}，名叫{n}。",
            f"{n}是一个{age}岁的{who}。{ta}最喜欢{hobby}。",
            f"很久以前，在一个小村庄里，住着一个{who}，{ta}的名字叫{n}。",
            f"在一个安静的小镇上，住着一个{trait}的{who}，名叫{n}。",
            f"{n}今年{age}岁了，{ta}是一个{trait}的孩子，每天都喜欢{hobby}。",
            f"有一个叫{n}的{who}，{ta}很{trait}，也很喜欢{hobby}。",
        ])
        return n, ta, intro, rng.choice(ADULTS)
    kind, n, m, home = rng.choice(ANIMALS)
    trait = rng.choice(TRAITS)
    intro = rng.choice([
        f"从前，{home}住着一{m}{kind}，名叫{n}。",
        f"在{home}，有一{m}{trait}的{kind}，它的名字叫{n}。",
        f"{n}是一{m}{trait}的{kind}，它住在{home}。",
        f"很久很久以前，{home}有一{m}{kind}叫{n}。它每天都很{trait}。",
        f"有一{m}{kind}叫{n}，它和妈妈一起住在{home}。",
    ])
    return n, "它", intro, "妈妈"


def _friend(rng, hero_name):
    """A second character, different from the hero: (name, pronoun, short description)."""
    while True:
        r = rng.random()
        if r < 0.6:
            girl = rng.random() < 0.5
            f = rng.choice(GIRLS if girl else BOYS)
            desc = f"一个叫{f}的{'小女孩' if girl else '小男孩'}"
            fta = "她" if girl else "他"
        else:
            kind, f, m, _ = rng.choice(ANIMALS)
            desc = f"一{m}叫{f}的{kind}"
            fta = "它"
        if f != hero_name:
            return f, fta, desc


def _arc_lost(rng):
    """The hero loses a favourite thing and finds it again with help."""
    return [
        rng.choice(["{n}有一{m}{adj}{obj}，{ta}非常喜欢它。", "{n}最喜欢的东西是一{m}{adj}{obj}。",
                    "{adult}送给{n}一{m}{adj}{obj}，{n}每天都带着它。"]),
        rng.choice(["{time}{n}带着{obj}去{place}玩。", "{time}{n}拿着{obj}来到{place}。"]),
        rng.choice(["{ta}玩得太开心了，回家的时候才发现{obj}不见了。",
                    "{ta}跑啊跑，一不小心，{obj}就不见了。",
                    "过了一会儿，{ta}低头一看，{obj}不见了！"]),
        rng.choice(["{n}很难过，哭了起来。", "{n}又着急又伤心，眼泪都流出来了。", "{n}难过极了。"]),
        rng.choice(["“我的{obj}去哪儿了？”{n}着急地问。", "“我把{obj}弄丢了，怎么办呢？”{n}{sad}。"]),
        rng.choice(["这时，{fdesc}走了过来。", "正在这时，{fdesc}看见了{n}。",
                    "{fdesc}听见了哭声，跑了过来。"]),
        rng.choice(["“别难过，我帮你一起找。”{f}{kind}。", "“不要哭，我们一起找吧！”{f}{kind}。"]),
        rng.choice(["他们找遍了{place}，最后在{hide}找到了{obj}。",
                    "他们一起找啊找，终于在{hide}发现了{obj}。",
                    "{f}眼睛很尖，一下子就在{hide}看到了{obj}。"]),
        rng.choice(["{n}紧紧地抱住{obj}，{glad}：“谢谢你，{f}！”", "“找到了！”{n}{happy}地跳了起来。"
                    + "{ta}对{f}说：“谢谢你帮助我！”"]),
        rng.choice(["从那以后，{n}和{f}成了好朋友，{n}也会好好保管自己的东西。",
                    "{n}明白了，要爱护自己的东西，朋友的帮助也很重要。",
                    "从那天起，{n}每次出门都会小心地看好自己的{obj}。"]),
    ]


def _arc_friend(rng):
    """The hero meets someone alone and they become friends."""
    return [
        rng.choice(["{time}{n}去{place}玩。", "{time}{adult}带{n}去{place}。", "{time}{n}一个人来到{place}。"]),
        rng.choice(["{ta}看见{fdesc}独自坐在那里，看起来很孤单。",
                    "在那里，{ta}看到了{fdesc}。{f}一个人站在角落里，不说话。",
                    "{ta}发现{fdesc}正在难过地看着别人玩。"]),
        rng.choice(["{n}走过去，{say}：“你好！我叫{n}。你想和我一起玩吗？”",
                    "“你为什么一个人呀？”{n}{ask}。"]),
        rng.choice(["{f}小声说：“我是新来的，我没有朋友。”", "{f}抬起头，{say}：“我叫{f}。我可以和你一起玩吗？”",
                    "{f}有点害羞，但还是点了点头。"]),
        rng.choice(["“当然可以！”{n}{glad}。", "“我们一起玩吧！”{n}{glad}。"]),
        rng.choice(["他们一起玩{game}，玩得非常开心。", "他们一起玩{game}，笑声传得很远很远。",
                    "{n}教{f}玩{game}，{f}很快就学会了。"]),
        rng.choice(["天快黑了，{f}{glad}：“今天谢谢你，我明天还想和你玩。”",
                    "分别的时候，{f}{glad}：“你是我最好的朋友！”"]),
        rng.choice(["从那天起，{n}和{f}成了最好的朋友。", "{n}知道，交一个新朋友是一件很美好的事。",
                    "从此以后，他们每天都一起玩。"]),
    ]


def _arc_share(rng):
    """The hero does not want to share, then shares and is happier."""
    return [
        rng.choice(["{time}{adult}给了{n}{k}{fm}{food}。", "{time}{n}带着{k}{fm}{food}去{place}。"]),
        rng.choice(["{food}看起来好吃极了，{n}很{happy}。", "{n}最喜欢吃{food}了。"]),
        rng.choice(["这时，{fdesc}走了过来，{say}：“我可以尝一尝吗？”",
                    "在{place}，{ta}遇到了{fdesc}。{f}看着{food}，{ask}：“你能分给我一点吗？”"]),
        rng.choice(["{n}想了想，{say}：“不行，这些都是我的。”", "{n}把{food}藏到身后，不想分给{f}。"]),
        rng.choice(["{f}很难过，慢慢地走开了。", "{f}低下头，什么也没说。"]),
        rng.choice(["{n}看着{f}的背影，心里也不好受。", "可是{n}一个人吃着{food}，一点也不开心。"]),
        rng.choice(["{ta}想起{adult}说过的话：“分享会让大家都快乐。”", "{ta}觉得自己做得不对。"]),
        rng.choice(["于是{n}追上{f}，{kind}：“对不起，我们一起吃吧！”",
                    "{n}跑过去，把一半{food}递给{f}，{kind}：“给你，我们一起吃。”"]),
        rng.choice(["{f}笑了，{glad}：“谢谢你，{n}！”", "{f}高兴极了，{glad}：“你真好！”"]),
        rng.choice(["两个好朋友坐在一起，吃得开开心心。{n}明白了，分享比一个人吃更快乐。",
                    "从那以后，{n}总是愿意和朋友分享。",
                    "{n}发现，和朋友一起吃的{food}比自己一个人吃的更甜。"]),
    ]


def _arc_fear(rng):
    """The hero is afraid of something and learns to be brave."""
    fear, brave = rng.choice([
        ("黑暗", "关上灯，{ta}看着窗外的星星和月亮，发现黑夜其实很美。"),
        ("打雷", "{adult}抱着{n}，给{ta}讲故事。雷声慢慢地变小了，{n}也不害怕了。"),
        ("水", "{ta}先把脚放进水里，然后慢慢地往前走。水凉凉的，很舒服。"),
        ("高高的滑梯", "{ta}深深地吸了一口气，从滑梯上滑了下来。“呼——”真好玩！"),
        ("大狗", "{ta}轻轻地摸了摸大狗的头。大狗摇着尾巴，舔了舔{n}的手。"),
        ("去新学校", "{ta}走进教室，老师笑着欢迎{ta}，还有很多小朋友和{ta}打招呼。"),
    ])
    return [
        rng.choice(["{n}有一个秘密：{ta}很怕" + fear + "。", "{n}什么都好，就是特别害怕" + fear + "。"]),
        rng.choice(["{time}{n}又遇到了" + fear + "，{ta}紧张得不敢动。",
                    "{time}{n}不得不面对" + fear + "，{ta}的心怦怦直跳。"]),
        rng.choice(["“我好害怕。”{n}小声说。", "“我不敢，我真的不敢。”{n}{sad}。"]),
        rng.choice(["{adult}摸摸{n}的头，{kind}：“别怕，我就在你身边。”",
                    "{adult}蹲下来，{kind}：“勇敢不是不害怕，而是害怕的时候也试一试。”",
                    "{fdesc}走过来，{kind}：“我陪着你，我们一起试试吧。”"]),
        rng.choice(["{n}点了点头。", "{n}想了想，决定试一试。"]),
        brave,
        rng.choice(["“我做到了！”{n}{happy}地喊道。", "{n}笑了，{glad}：“原来一点也不可怕！”"]),
        rng.choice(["从那以后，{n}再也不怕" + fear + "了。", "{n}觉得自己变成了一个勇敢的孩子。",
                    "{n}明白了，只要勇敢地试一试，很多事情都没有那么可怕。"]),
    ]


def _arc_disobey(rng):
    """The hero ignores a warning, gets into trouble, says sorry and learns."""
    rule, trouble, fix = rng.choice([
        ("不要在屋子里扔球", "球飞了出去，“啪”的一声，把桌上的花瓶打碎了。", "他们一起把碎片扫干净了"),
        ("不要跑到泥坑里去", "{ta}跳进了泥坑，衣服上、脸上全是泥。", "{adult}帮{ta}洗了一个热水澡"),
        ("不要爬那棵高高的树", "{ta}爬到一半，脚下一滑，摔在了草地上，膝盖破了皮。", "{adult}给{ta}贴上了创可贴"),
        ("吃饭以前不要吃糖", "{ta}吃了很多糖，晚饭的时候肚子疼得吃不下饭。", "{adult}给{ta}倒了一杯温水"),
        ("不要一个人走远", "{ta}追着一只蝴蝶走了很远，回头一看，找不到回家的路了。", "{adult}找到了{ta}，紧紧地抱住了{ta}"),
        ("下雨天不要出去玩", "{ta}跑到外面，很快就被大雨淋湿了，冷得直发抖。", "{adult}用大毛巾把{ta}擦干了"),
    ])
    return [
        rng.choice(["{time}{adult}对{n}说：“" + rule + "。”", "{adult}常常提醒{n}：“" + rule + "。”"]),
        rng.choice(["可是{n}没有听。", "{n}嘴上答应了，心里却不这么想。", "{n}觉得没关系，一点也没放在心上。"]),
        rng.choice(["“就一次，没关系的。”{n}心里想。", "“我会很小心的。”{n}{say}。"]),
        trouble,
        rng.choice(["{n}吓坏了，哇哇大哭起来。", "{n}愣住了，不知道该怎么办。", "{n}很后悔，眼泪一下子流了出来。"]),
        rng.choice(["{adult}听到声音，赶紧跑了过来。", "{adult}很快就来了。"]),
        rng.choice(["“对不起，我应该听你的话。”{n}{sad}。", "{n}低着头说：“对不起，我错了。”"]),
        rng.choice(["{adult}没有生气，" + fix + "。", fix + "以后，{adult}温柔地看着{n}。"]),
        rng.choice(["“知道错了就好，下次要记住哦。”{adult}{kind}。", "“没关系，每个人都会犯错。”{adult}{kind}。"]),
        rng.choice(["{n}明白了，大人的提醒是为了保护自己。", "从那以后，{n}总是认真听{adult}的话。",
                    "{n}记住了这个教训，再也没有这样做过。"]),
    ]


def _arc_help(rng):
    """The hero helps an animal in trouble and gets thanked."""
    kind, _, m, _ = rng.choice(ANIMALS)
    trouble, help_ = rng.choice([
        ("翅膀受伤了，飞不起来", "{n}小心地把它捧起来，用手帕包好它的翅膀"),
        ("被困在高高的树上，下不来", "{n}找来一个梯子，慢慢地把它抱了下来"),
        ("掉进了一个小坑里，爬不出来", "{n}趴在地上，伸出手把它拉了上来"),
        ("迷路了，找不到妈妈", "{n}带着它找了好久，终于找到了它的妈妈"),
        ("又冷又饿，缩成了一团", "{n}把自己的{food}分给它，又给它盖上了一条小毯子"),
    ])
    return [
        rng.choice(["{time}{n}在{place}散步。", "{time}{n}高高兴兴地去{place}玩。"]),
        rng.choice(["突然，{ta}听到一阵小小的叫声。", "忽然，{ta}看见{hide}有什么东西在动。"]),
        f"原来是一{m}{kind}，它" + trouble + "。",
        rng.choice(["“你好可怜呀！别怕，我来帮你。”{n}{kind}。", "{n}心想：我一定要帮帮它。"]),
        help_ + "。",
        rng.choice([f"{kind}好像在说：“谢谢你！”", f"{kind}高兴地叫了几声，围着{{n}}转圈圈。"]),
        rng.choice(["{n}心里甜甜的，比吃了糖还高兴。", "{n}觉得帮助别人是一件快乐的事。"]),
        rng.choice(["回到家，{n}把这件事告诉了{adult}。{adult}{glad}：“你真是个善良的好孩子！”",
                    f"从那以后，那{m}{kind}常常来找{{n}}玩。", "{n}明白了，帮助别人，自己也会很快乐。"]),
    ]


def _arc_build(rng):
    """The hero makes something, it goes wrong, they try again and succeed."""
    thing, verb, oops = rng.choice([
        ("沙堡", "堆", "一个大浪打过来，把沙堡冲倒了"),
        ("雪人", "堆", "一阵大风吹过来，雪人的头掉了下来"),
        ("积木城堡", "搭", "城堡太高了，“哗啦”一声倒了下来"),
        ("纸飞机", "折", "纸飞机一飞出去就掉在了地上"),
        ("蛋糕", "做", "蛋糕烤得太久，有一点焦了"),
        ("一幅画", "画", "一杯水打翻了，画纸全湿了"),
    ])
    return [
        rng.choice(["{time}{n}想" + verb + thing + "。", "{time}{n}决定" + verb + thing + "送给{adult}。"]),
        rng.choice(["{ta}认认真真地" + verb + "了很久。", "{ta}一边哼着歌，一边专心地" + verb + "。"]),
        rng.choice(["眼看就要完成了，可是" + oops + "。", "突然，" + oops + "。"]),
        rng.choice(["{n}很失望，{sad}：“我再也不" + verb + "了！”", "{n}难过得想哭。"]),
        rng.choice(["{adult}走过来，{kind}：“没关系，我们再试一次。”",
                    "{fdesc}看见了，{kind}：“别灰心，我来帮你！”"]),
        rng.choice(["{n}擦干眼泪，又开始" + verb + "起来。", "于是，{n}重新开始" + verb + "。"]),
        rng.choice(["这一次，{ta}更小心了，最后" + verb + "出了一个更漂亮的" + thing.lstrip("一幅") + "。",
                    "这一次，" + thing + "比上一次还要好。"]),
        rng.choice(["“太棒了！”大家都拍手叫好。", "{n}看着自己" + verb + "的" + thing.lstrip("一幅") + "，{happy}地笑了。"]),
        rng.choice(["{n}明白了，遇到困难不要放弃。", "{n}学会了：失败了也没关系，再试一次就好。"]),
    ]


def _arc_discover(rng):
    """The hero finds something curious and it leads to a small surprise."""
    return [
        rng.choice(["{time}{n}和{adult}一起去{place}。", "{time}{n}在{place}里到处看看。"]),
        rng.choice(["{ta}在{hide}发现了一{m}{adj}{obj}。", "忽然，{ta}看见{hide}有一{m}{adj}{obj}。"]),
        rng.choice(["“这是什么？”{n}好奇地问。", "“哇，好漂亮啊！”{n}{glad}。"]),
        rng.choice(["{ta}把{obj}拿起来，仔细地看了又看。", "{ta}小心地捡起{obj}，拿给{adult}看。"]),
        rng.choice(["{adult}{say}：“这一定是别人丢的，我们应该还给它的主人。”",
                    "{adult}{say}：“也许有人正在找它呢。”"]),
        rng.choice(["于是，他们在{place}问了很多人。", "他们一边走一边问：“这是谁的{obj}？”"]),
        rng.choice(["最后，{fdesc}跑了过来，{say}：“那是我的{obj}！”", "原来，{obj}是{fdesc}的。"]),
        rng.choice(["{f}开心极了，{glad}：“谢谢你，{n}！”", "{f}高兴得跳了起来，连声说谢谢。"]),
        rng.choice(["{n}觉得，把东西还给别人，比自己留着更快乐。", "从那天起，{n}和{f}成了好朋友。",
                    "{adult}夸{n}是一个诚实的好孩子。"]),
    ]


def _arc_rain(rng):
    """A rainy day indoors turns out fine and ends with a rainbow."""
    return [
        rng.choice(["{time}天下起了大雨。", "{time}外面下着雨，哗啦啦，哗啦啦。"]),
        rng.choice(["{n}本来想去{place}玩，现在只能待在家里。", "{n}趴在窗边，{sad}：“我好想出去玩啊。”"]),
        rng.choice(["{ta}觉得很无聊，一点也不开心。", "{ta}叹了一口气，不知道该做什么。"]),
        rng.choice(["{adult}笑着说：“我们来玩{game}吧！”", "{adult}拿出一{m}{adj}{obj}，{glad}：“我们用它来玩个游戏吧。”"]),
        rng.choice(["{n}和{adult}一起玩{game}，玩得哈哈大笑。", "他们玩了一个又一个游戏，{n}早就忘了下雨的事。"]),
        rng.choice(["过了一会儿，雨停了。", "不知不觉，雨停了，太阳出来了。"]),
        rng.choice(["天上出现了一道美丽的彩虹。", "{n}跑到窗边一看，天空中挂着一道彩虹。"]),
        rng.choice(["“哇，彩虹！”{n}{happy}地叫了起来。", "“真美呀！”{n}{glad}。"]),
        rng.choice(["{n}明白了，下雨天也可以很快乐。", "{n}觉得，只要和家人在一起，每一天都是好日子。"]),
    ]


def _arc_gift(rng):
    """The hero makes a present by hand and learns that the heart counts most."""
    gift, make = rng.choice([("一张贺卡", "在上面画了一个大大的太阳和一颗红红的爱心"),
                             ("一束野花", "在{place}摘了好多五颜六色的小花，用丝带扎好"),
                             ("一条项链", "把彩色的珠子一颗一颗地穿了起来"),
                             ("一幅画", "画了全家人手拉着手的样子"),
                             ("一个小盒子", "用纸板做了一个小盒子，还在上面贴满了星星")])
    return [
        rng.choice(["{time}{n}听说明天是{adult}的生日。", "{n}知道，{adult}的生日快到了。"]),
        rng.choice(["{ta}想送{adult}一份礼物，可是{ta}没有钱。", "{ta}很想给{adult}一个惊喜，可是不知道送什么好。"]),
        rng.choice(["{n}想了很久，终于有了一个好主意。", "{n}去问{f}，{f}{say}：“你可以自己做一份礼物呀！”"]),
        rng.choice(["{ta}决定亲手准备" + gift + "。", "于是，{n}开始悄悄地准备" + gift + "。"]),
        "{n}" + make + "。",
        rng.choice(["{ta}做得很认真，连手上都弄脏了。", "{ta}做了一遍又一遍，直到自己满意为止。"]),
        rng.choice(["第二天，{n}把礼物送给{adult}，{say}：“生日快乐！”", "生日那天，{n}把礼物藏在身后，大声说：“生日快乐！”"]),
        rng.choice(["{adult}看到礼物，感动得眼睛都红了。", "{adult}紧紧地抱住了{n}，{glad}：“这是我收到的最好的礼物！”"]),
        rng.choice(["{n}明白了，礼物贵不贵不重要，最重要的是心意。", "{n}觉得，让别人开心，自己也会很开心。"]),
    ]


def _arc_plant(rng):
    """The hero plants a seed, is impatient, waits, and is rewarded."""
    seed, grown = rng.choice([("一颗向日葵的种子", "一朵金黄色的向日葵"), ("一颗小小的种子", "一朵漂亮的小花"),
                              ("一颗西瓜籽", "一个圆圆的大西瓜"), ("一颗豆子", "一棵绿油油的豆苗"),
                              ("一颗苹果核", "一棵小小的苹果树")])
    return [
        rng.choice(["{time}{adult}给了{n}" + seed + "。", "{time}{n}在{place}捡到了" + seed + "。"]),
        rng.choice(["{n}把它种在院子里，浇了一点水。", "{n}挖了一个小坑，把种子放进去，再盖上土。"]),
        rng.choice(["“你快点长大吧！”{n}对种子说。", "{n}每天早上都跑去看一看。"]),
        rng.choice(["可是一天过去了，两天过去了，什么也没有长出来。", "可是过了好几天，土里还是什么也没有。"]),
        rng.choice(["{n}着急地问{adult}：“它是不是不会长了？”", "{n}有点失望，{sad}：“它为什么不长呢？”"]),
        rng.choice(["{adult}{kind}：“别着急，种子需要时间。你要每天给它浇水，耐心地等一等。”",
                    "{adult}笑了笑，{kind}：“好东西都需要慢慢等。”"]),
        rng.choice(["于是，{n}每天都给种子浇水，还和它说话。", "{n}点点头，每天都认真地照顾它。"]),
        rng.choice(["有一天早上，{n}发现土里冒出了一点点绿色的小芽。", "终于，一个小小的绿芽从土里钻了出来。"]),
        rng.choice(["又过了很久，它长成了" + grown + "。", "夏天到了，那里长出了" + grown + "。"]),
        rng.choice(["“哇！”{n}{glad}，“我的种子长大了！”", "{n}高兴得拍起手来。"]),
        rng.choice(["{n}学会了耐心，知道了等待也是一件美好的事。", "从那以后，{n}更喜欢照顾花草了。"]),
    ]


ARCS = [_arc_lost, _arc_friend, _arc_share, _arc_fear, _arc_disobey, _arc_help, _arc_build,
        _arc_discover, _arc_rain, _arc_gift, _arc_plant]
GAMES = ["捉迷藏", "跳房子", "老鹰捉小鸡", "过家家", "丢沙包", "踢球", "搭积木", "猜谜语", "跳绳"]


def generate_story(rng):
    n, ta, intro, adult = _hero(rng)
    f, fta, fdesc = _friend(rng, n)
    obj, m, adjs = rng.choice(OBJECTS)
    food, fm = rng.choice(FOODS)
    s = _Slots(rng, n=n, ta=ta, f=f, fta=fta, fdesc=fdesc, obj=obj, m=m, adj=rng.choice(adjs),
               place=rng.choice(PLACES), hide=rng.choice(HIDING), adult=adult, food=food, fm=fm,
               k=rng.choice(NUMS), game=rng.choice(GAMES))
    body = rng.choice(ARCS)(rng)
    # a story opens with its introduction, sometimes ends with one more closing line
    parts = [intro] + body
    if rng.random() < 0.3:
        parts.append(rng.choice(ENDINGS_HAPPY))
    return "".join(parts).format_map(s)


def generate_stories(n, seed=0):
    """n distinct stories, the same ones for the same seed on every machine."""
    rng = random.Random(seed)
    out, seen = [], set()
    while len(out) < n:
        story = generate_story(rng)
        if story not in seen:
            seen.add(story)
            out.append(story)
    return out


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
        raise UserError(f"sentencepiece training failed: {str(e).splitlines()[0]}") from None
    return prefix + ".model"


# -----------------------------------------------------------------------------
# download: the real dataset (resumable HTTP with checks), the sample corpus, the published models

SAMPLE_STORIES = 25000
SAMPLE_SHARDS = 10
RETRIES = 5
BACKOFF = 0.5  # seconds before the first retry, doubled after each failure


def hub_endpoint():
    """The hub or a mirror (users in mainland China set HF_ENDPOINT=https://hf-mirror.com)."""
    return os.environ.get("HF_ENDPOINT", HF_ENDPOINT).rstrip("/")


def _auth_headers():
    token = os.environ.get("HF_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def _expected_sha256(headers):
    """The hub serves LFS files with their sha256 as (X-Linked-)ETag; a plain ETag may be anything."""
    for key in ("X-Linked-Etag", "ETag"):
        tag = headers.get(key, "").removeprefix("W/").strip('"')
        if len(tag) == 64 and all(c in "0123456789abcdef" for c in tag.lower()):
            return tag.lower()
    return None


class _Retry(Exception):
    """A transient download failure: try again (resuming) after a pause."""


def _fetch_once(url, part, meta, desc):
    """One HTTP attempt: append to part from its current size (Range), or start over when the server
    sends the whole file. Returns (announced total size or None, sha256 the server vouches for)."""
    import requests
    from tqdm import tqdm
    offset = os.path.getsize(part) if os.path.exists(part) and meta.get("url") == url else 0
    if offset and offset == meta.get("total"):
        return offset, meta.get("sha256")  # complete already: stopped before the rename
    headers = {**_auth_headers(), "Accept-Encoding": "identity"}  # byte counts must match the file
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if meta.get("etag"):
            headers["If-Range"] = meta["etag"]  # a changed file is sent whole, never spliced
    try:
        with requests.get(url, headers=headers, stream=True, timeout=(15, 60)) as r:
            if r.status_code == 404:
                raise UserError(f"{url} not found (HTTP 404)")
            if r.status_code in (401, 403):
                raise UserError(f"{url}: access denied (HTTP {r.status_code}); set HF_TOKEN if the repo needs a login")
            if r.status_code == 416 and offset:  # the part is not a prefix of this file: start over
                os.remove(part)
                raise _Retry("server refused the resume range")
            if r.status_code >= 500 or r.status_code == 429:
                raise _Retry(f"HTTP {r.status_code}")
            if r.status_code >= 300:
                raise UserError(f"{url}: HTTP {r.status_code}")
            if r.status_code == 206:
                start = r.headers.get("Content-Range", "bytes 0-").split()[1].split("-")[0]
                if start != str(offset):
                    os.remove(part)
                    raise _Retry(f"server resumed at byte {start}, expected {offset}")
            else:
                offset = 0  # the server sent the whole file
            length = r.headers.get("Content-Length")
            total = offset + int(length) if length is not None else None
            sha = _expected_sha256(r.headers) or (meta.get("sha256") if offset else None)
            with open(part + ".json", "w") as f:
                json.dump({"url": url, "etag": r.headers.get("ETag"), "total": total, "sha256": sha}, f)
            with open(part, "ab" if offset else "wb") as f, \
                    tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                         desc=desc, mininterval=0.5) as bar:
                for chunk in r.iter_content(chunk_size=1 << 16):
                    f.write(chunk)
                    bar.update(len(chunk))
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as e:
        raise _Retry(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    except requests.RequestException as e:
        raise UserError(f"cannot download {url}: {e}") from None
    size = os.path.getsize(part)
    if total is not None and size < total:
        raise _Retry(f"connection closed after {size} of {total} bytes")
    if total is not None and size != total:
        os.remove(part)
        raise UserError(f"{url}: got {size} bytes, the server announced {total}")
    return total, sha


def download_file(url, path, sha256=None, desc=None):
    """Download url to path, resuming path.part with a Range request after a dropped connection and
    retrying with backoff. Verifies the size the server announced and the sha256 when one is known
    (given, or the hub's ETag). Does nothing when path already exists."""
    if os.path.exists(path):
        return path
    part, meta_path = path + ".part", path + ".part.json"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    for attempt in range(RETRIES):
        if attempt:
            time.sleep(BACKOFF * 2 ** (attempt - 1))
        meta = {}
        if os.path.exists(meta_path):
            with open(meta_path) as f:
                meta = json.load(f)
        try:
            _, want = _fetch_once(url, part, meta, desc or os.path.basename(path))
            break
        except _Retry as e:
            last_error = str(e)
    else:
        raise UserError(f"cannot download {url} after {RETRIES} tries: {last_error} "
                        "(run again to resume; set HF_ENDPOINT to use a mirror)")
    want = sha256 or want
    if want:
        h = hashlib.sha256()
        with open(part, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != want.lower():
            os.remove(part)
            os.remove(meta_path)
            raise UserError(f"{url}: sha256 mismatch (got {h.hexdigest()}, expected {want}); "
                            "the download was deleted, run again")
    os.replace(part, path)
    os.remove(meta_path)
    return path


def safe_extract(archive, out_dir):
    """Extract a .tar(.gz) of data shards into out_dir, all or nothing: every entry is checked first
    (no absolute paths, no '..', no links or devices), everything lands in a temporary folder next to
    out_dir, and that folder is renamed into place only when the archive was read to its end."""
    parent = os.path.dirname(os.path.abspath(out_dir))
    tmp = tempfile.mkdtemp(prefix=".extract-", dir=parent)
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = tar.getmembers()  # reads the whole archive: a truncated one fails here
                for m in members:
                    parts = m.name.replace("\\", "/").split("/")
                    if m.name.startswith(("/", "\\")) or ":" in parts[0] or ".." in parts:
                        raise UserError(f"{archive}: refusing unsafe path {m.name!r} in the archive")
                    if not (m.isfile() or m.isdir()):
                        raise UserError(f"{archive}: refusing link or special entry {m.name!r} in the archive")
                for m in members:
                    target = os.path.join(tmp, *[p for p in m.name.split("/") if p not in ("", ".")])
                    if m.isdir():
                        os.makedirs(target, exist_ok=True)
                        continue
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    with tar.extractfile(m) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            raise UserError(f"{archive} is corrupt or truncated ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                            "delete it and run download again") from None
        # the shards may sit in a folder inside the archive: use the innermost single folder
        root = tmp
        while True:
            entries = os.listdir(root)
            if len(entries) == 1 and os.path.isdir(os.path.join(root, entries[0])):
                root = os.path.join(root, entries[0])
            else:
                break
        if not find_documents(root):
            raise UserError(f"{archive} holds no .jsonl/.json shards")
        os.replace(root, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def print_example(data_dir):
    for text in iter_documents(find_documents(data_dir), {}):
        print("example story:")
        print(text)
        return


def write_sample(data_dir, n=SAMPLE_STORIES, shards=SAMPLE_SHARDS, seed=0):
    """The offline sample corpus, in the real dataset's layout: data00.jsonl (validation) .. data09.jsonl."""
    parent = os.path.dirname(os.path.abspath(data_dir))
    os.makedirs(parent, exist_ok=True)
    stories = generate_stories(n, seed)
    tmp = tempfile.mkdtemp(prefix=".sample-", dir=parent)
    try:
        per = (n + shards - 1) // shards
        for s in range(shards):
            with open(os.path.join(tmp, f"data{s:02d}.jsonl"), "w", encoding="utf-8") as f:
                for i in range(s * per, min(n, (s + 1) * per)):
                    f.write(json.dumps({"id": i, "story_zh": stories[i]}, ensure_ascii=False) + "\n")
        os.replace(tmp, data_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {n} generated stories ({sum(map(len, stories))} characters) in {shards} shards to {data_dir}")


def download(dataset="tinystories_zh", data_root=DATA_CACHE_DIR, data_url=None, sha256=None):
    data_dir = os.path.join(data_root, "TinyStories_all_data")
    if find_documents(data_dir):
        print(f"{data_dir} already holds the data, nothing to do")
    elif dataset == "sample":
        write_sample(data_dir)
    else:
        url = data_url or f"{hub_endpoint()}/datasets/{DATASET_REPO}/resolve/main/{DATASET_FILE}"
        archive = os.path.join(data_root, os.path.basename(url.split("?")[0]) or DATASET_FILE)
        print(f"downloading {url} to {archive}")
        download_file(url, archive, sha256=sha256)
        print(f"extracting {archive} to {data_dir}")
        safe_extract(archive, data_dir)
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
        download_file(f"{hub_endpoint()}/{MODEL_REPO}/resolve/main/{name}", path)
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


def _jsonl_fast(raw):
    """All objects of a clean .jsonl file in one json.loads call (as one array), about twice as fast as
    a call per line; None when the file has any line that would not parse on its own."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = [line for line in text.split("\n") if line.strip(" \t\n\r\x0b\x0c")]
    try:
        objs = json.loads("[" + ",".join(lines) + "]")
    except ValueError:
        return None
    if len(objs) != len(lines):  # a line like `1, 2` holds two values: let the line-by-line path judge
        return None
    return objs, bool(re.search(r"\\u[dD][89abAB]", text))  # lone surrogates only come from escapes


def _values(path):
    """(JSON value or text, check) for every document in one file; the value is None for a line or
    file that does not parse. check says whether strings may hold lone surrogates (see _text_of)."""
    with open(path, "rb") as f:
        raw = f.read()
    if path.endswith(".jsonl"):
        fast = _jsonl_fast(raw)
        if fast is not None:
            objs, check = fast
            for obj in objs:
                yield obj, check
            return
        for line in raw.split(b"\n"):
            if line.strip():
                try:
                    yield json.loads(line.decode("utf-8")), True
                except (UnicodeDecodeError, ValueError):
                    yield None, True
        return
    try:
        docs = json.loads(raw.decode("utf-8")) if path.endswith(".json") else [raw.decode("utf-8")]
    except (UnicodeDecodeError, ValueError):
        yield None, True
        return
    for d in docs if isinstance(docs, list) else [docs]:
        yield d, True


def iter_documents(files, stats):
    """Yield the stories in files; malformed or non-UTF-8 lines/files are skipped and counted in stats."""
    for path in files:
        for value, check in _values(path):
            text = _text_of(value, check)
            if text is None:
                stats["bad"] = stats.get("bad", 0) + 1
            elif text := text.strip():
                yield text


def _source_dir(data_root, data_dir):
    d = data_dir or os.path.join(data_root, "TinyStories_all_data")
    if data_dir and not os.path.isdir(data_dir):
        raise UserError(f"--data_dir {data_dir} is not a folder (give the folder that holds the files)")
    files = find_documents(d)
    if not files:
        hint = "" if data_dir else " (run: python3 tinystories.py download, or download --dataset=sample)"
        raise UserError(f"no .jsonl/.json/.txt/.md files in {d}{hint}")
    return files


# -----------------------------------------------------------------------------
# train_vocab and pretokenize

def train_vocab(vocab_size, data_root=DATA_CACHE_DIR, data_dir=None, max_chars=20_000_000):
    """Train tok{vocab_size}.model on a bounded sample of the stories, read as a stream. The sample is
    taken from the training shards first (the first shard is validation), spread over the files."""
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
        for text in iter_documents([path], stats):
            texts.append(text)
            got += len(text)
            if got >= per_file or total + got >= max_chars:
                break
        total += got
        if total >= max_chars:
            break
    print(f"training a {vocab_size}-piece BPE vocabulary on {len(texts)} stories ({total} characters)"
          + (f", skipped {stats['bad']} malformed lines" if stats.get("bad") else ""))
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
    src, model_path, out_path, threads, use_fast = task
    sp, fast, _ = _encoders(model_path)
    stats = {}
    texts = list(iter_documents([src], stats))
    arr = encode_shard_fast(fast, texts, threads, src) if use_fast else encode_shard(sp, texts, threads)
    tmp = out_path + ".tmp"
    arr.tofile(tmp)
    os.replace(tmp, out_path)  # a shard is either whole or absent
    return src, len(texts), sum(map(len, texts)), len(arr), stats.get("bad", 0)


def _shard_names(files, data_dir):
    """One output name per source file: its path under data_dir, extension swapped for .bin."""
    names = [os.path.splitext(os.path.relpath(f, data_dir))[0].replace(os.sep, "_") for f in files]
    if len(set(names)) < len(names):  # a.txt and a.md: keep the extension in the name
        names = [os.path.relpath(f, data_dir).replace(os.sep, "_") for f in files]
    return [n + ".bin" for n in names]


def pretokenize(vocab_size, data_root=DATA_CACHE_DIR, data_dir=None, num_workers=None, encoder="auto"):
    """Tokenize every source file into {data_root}/tok{vocab_size}/NAME.bin. vocab_size=0 uses the
    Llama 2 tokenizer.model (as the original) and writes the shards next to the sources.
    encoder: "bpe" (bpe.c, see tokenizer.fast_encoder), "sentencepiece", or "auto" (bpe.c when it can)."""
    if encoder not in ("auto", "bpe", "sentencepiece"):
        raise UserError(f"encoder must be auto, bpe or sentencepiece, got {encoder!r}")
    if not 0 <= vocab_size <= 65535:
        raise UserError(f"vocab_size must be in 1..65535 (the shards are uint16), got {vocab_size}")
    model_path = os.path.join(data_root, f"tok{vocab_size}.model") if vocab_size else "tokenizer.model"
    if not os.path.isfile(model_path):
        raise UserError(f"{model_path} not found (run: python3 tinystories.py train_vocab --vocab_size={vocab_size})"
                        if vocab_size else "tokenizer.model (the Llama 2 tokenizer) not found in the current folder")
    import sentencepiece as spm
    try:
        sp = spm.SentencePieceProcessor(model_file=model_path)
    except (OSError, RuntimeError) as e:
        raise UserError(f"{model_path} is not a sentencepiece model ({str(e).splitlines()[0]})") from None
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
    tasks = [(f, model_path, os.path.join(out_dir, n), threads, use_fast) for f, n in zip(files, names)]
    from tqdm import tqdm
    results = []
    if workers == 1:
        for t in tqdm(tasks, desc="pretokenize", unit="shard"):
            results.append(_encode_file(t))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for r in tqdm(pool.map(_encode_file, tasks), total=len(tasks), desc="pretokenize", unit="shard"):
                results.append(r)
    stale = [f for f in glob.glob(os.path.join(out_dir, "*.bin")) if os.path.basename(f) not in set(names)]
    for f in stale if vocab_size else []:  # shards of an earlier run over other files would mix into training
        os.remove(f)
    stories = sum(r[1] for r in results)
    chars = sum(r[2] for r in results)
    tokens = sum(r[3] for r in results)
    bad = sum(r[4] for r in results)
    dt = time.time() - t0
    print(f"wrote {len(results)} shards to {out_dir}: {stories} stories, {chars} characters, {tokens} tokens "
          f"({tokens / max(stories, 1):.1f} per story) in {dt:.1f}s ({chars / max(dt, 1e-9):,.0f} chars/s, {encoder}); "
          f"first shard {names[0]} is the validation split"
          + (f"; skipped {bad} malformed or non-UTF-8 lines" if bad else ""))
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


class Task:

    @staticmethod
    def iter_batches(batch_size, device, num_workers=0, **dataset_kwargs):
        """As the original: an endless generator of (x, y) batches. num_workers is accepted for
        compatibility; the stream reads memory-mapped shards in this process."""
        stream = BatchStream(batch_size=batch_size, **dataset_kwargs)
        while True:
            yield stream.next_batch(device)


# -----------------------------------------------------------------------------
# command line

def main(argv=None):
    parser = argparse.ArgumentParser(description="Chinese TinyStories: download, train_vocab, pretokenize")
    parser.error = lambda msg: sys.exit(f"error: {msg} (see --help)")  # one line, not the usage
    parser.add_argument("stage", choices=["download", "download_model", "train_vocab", "pretokenize"])
    parser.add_argument("--dataset", default="tinystories_zh", choices=["tinystories_zh", "sample"],
                        help="download: the real dataset from the hub, or the offline generated sample")
    parser.add_argument("--data_url", default=None, help="download: fetch the tarball from this URL instead")
    parser.add_argument("--sha256", default=None, help="download: expected sha256 of the tarball")
    parser.add_argument("--model", default="stories15M", help="download_model: " + "|".join(MODELS))
    parser.add_argument("--out_dir", default=".", help="download_model: where to put the files")
    parser.add_argument("--vocab_size", type=int, default=0, help="train_vocab/pretokenize: vocabulary size")
    parser.add_argument("--data_dir", default=None, help="train_vocab/pretokenize: a folder of your own "
                        ".jsonl/.json/.txt/.md files instead of the downloaded shards")
    parser.add_argument("--data_root", default=DATA_CACHE_DIR, help="the cache folder (default: data)")
    parser.add_argument("--max_chars", type=int, default=20_000_000, help="train_vocab: sample size in characters")
    parser.add_argument("--num_workers", type=int, default=0, help="pretokenize: cores to use (0: all)")
    parser.add_argument("--encoder", default="auto", choices=["auto", "bpe", "sentencepiece"],
                        help="pretokenize: bpe.c (make bpe; same tokens, faster) or sentencepiece; auto: bpe.c if it can")
    args = parser.parse_args(argv)
    if args.num_workers < 0:
        parser.error(f"--num_workers must be >= 0 (0: all cores), got {args.num_workers}")
    try:
        if args.stage == "download":
            download(args.dataset, args.data_root, args.data_url, args.sha256)
        elif args.stage == "download_model":
            download_model(args.model, args.out_dir)
        elif args.stage == "train_vocab":
            train_vocab(args.vocab_size, args.data_root, args.data_dir, args.max_chars)
        elif args.stage == "pretokenize":
            pretokenize(args.vocab_size, args.data_root, args.data_dir, args.num_workers or None, args.encoder)
    except (UserError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
