"""
The offline sample corpus: Chinese children's stories in the TinyStories style, composed from
characters (girls, boys, animals), places, objects and a few story arcs. Pure code and seeded, so
every machine generates the same corpus without the network.

    from storygen import generate_stories
    stories = generate_stories(1000, seed=0)   # the same 1000 stories on every machine

`python3 tinystories.py download --dataset=sample` writes them in the real dataset's layout.
"""

import random

# One name per story, the hero's: the other characters are called by what they are (小女孩, 小兔子,
# 妈妈), so a model trained on these stories learns to carry the hero's name from the first sentence
# to the last. No name is also a common word (本来, 慢慢地, 一点点, 甜甜的, 红红的 are not names here).
GIRLS = ["莉莉", "小美", "安娜", "朵朵", "米娅", "小红", "露西", "艾米", "佳佳", "琪琪", "婷婷", "小雨",
         "苏菲", "妮妮", "小芳", "贝拉", "萌萌", "小月"]
BOYS = ["汤姆", "小明", "彼得", "杰克", "乐乐", "豆豆", "小刚", "提米", "强强", "山姆", "马克", "小宝",
        "亮亮", "东东", "小军", "麦克", "丁丁", "小虎"]
# an animal hero may carry any name, a pet's or a child's (the demo's prompt: 从前，有一只小狗叫豆豆)
PETS = ["咪咪", "旺旺", "白白", "胖胖", "啾啾", "嘎嘎", "跳跳", "皮皮", "吱吱", "呱呱", "阿宝", "飞飞",
        "毛毛", "球球", "嘟嘟", "花花", "墩墩", "咩咩"]
# (kind, measure word, home)
ANIMALS = [("小猫", "只", "一座小房子里"), ("小狗", "只", "一个大院子里"), ("小兔子", "只", "森林里"),
           ("小熊", "只", "大山脚下"), ("小鸟", "只", "一棵大树上"), ("小鸭子", "只", "池塘边"),
           ("小松鼠", "只", "一棵老橡树上"), ("小猴子", "只", "森林里"), ("小老鼠", "只", "一个谷仓里"),
           ("小青蛙", "只", "荷塘里"), ("小象", "头", "草原上"), ("小马", "匹", "农场上"),
           ("小狐狸", "只", "森林里"), ("小刺猬", "只", "花园里"), ("小猪", "只", "农场上"),
           ("小鹿", "只", "森林里"), ("小乌龟", "只", "小河边"), ("小羊", "只", "山坡上")]
NAMES = GIRLS + BOYS + PETS
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
    """A main character: (name, pronoun, introduction sentences, the grown-up in the story, what it is)."""
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
        return n, ta, intro, rng.choice(ADULTS), who
    kind, m, home = rng.choice(ANIMALS)
    n = rng.choice(NAMES)
    trait = rng.choice(TRAITS)
    intro = rng.choice([
        f"从前，{home}住着一{m}{kind}，名叫{n}。",
        f"在{home}，有一{m}{trait}的{kind}，它的名字叫{n}。",
        f"{n}是一{m}{trait}的{kind}，它住在{home}。",
        f"很久很久以前，{home}有一{m}{kind}叫{n}。它每天都很{trait}。",
        f"有一{m}{kind}叫{n}，它和妈妈一起住在{home}。",
        f"从前，有一{m}{kind}叫{n}。它住在{home}。",
    ])
    return n, "它", intro, "妈妈", kind


def _friend(rng, hero_kind):
    """A second character, unnamed and not of the hero's kind: (how the story calls it, introduction)."""
    while True:
        if rng.random() < 0.6:
            f = rng.choice(["小女孩", "小男孩"])
            desc = rng.choice(["一个", "一个新来的", "邻居家的"]) + f
        else:
            f, m, _ = rng.choice(ANIMALS)
            desc = f"一{m}{f}"
        if f != hero_kind:
            return f, desc


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
        rng.choice(["{f}小声说：“我是新来的，我没有朋友。”", "{f}抬起头，{say}：“我可以和你一起玩吗？”",
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
    kind, m, _ = rng.choice(ANIMALS)
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
        rng.choice(["{n}想了很久，终于有了一个好主意。", "{n}去找{fdesc}商量，{f}{say}：“你可以自己做一份礼物呀！”"]),
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
    n, ta, intro, adult, hero_kind = _hero(rng)
    f, fdesc = _friend(rng, hero_kind)
    obj, m, adjs = rng.choice(OBJECTS)
    food, fm = rng.choice(FOODS)
    s = _Slots(rng, n=n, ta=ta, f=f, fdesc=fdesc, obj=obj, m=m, adj=rng.choice(adjs),
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


def names_in(text):
    """The names from NAMES that occur in text, in order of first appearance."""
    found = [(text.find(n), n) for n in NAMES if n in text]
    return [n for _, n in sorted(found)]
