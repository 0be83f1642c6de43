"""
Sample stories from a trained model, printing them as they are generated.

    python3 sample.py --checkpoint=out/ckpt.pt --start=从前 --max_new_tokens=200
    python3 sample.py --checkpoint=stories15M.bin --tokenizer=data/tok5000.model --temperature=0
    python3 sample.py --checkpoint=out/model.bin --tokenizer=data/tok5000.model --start=FILE:prompt.txt
    python3 sample.py --checkpoint=out/sft/ckpt.pt --instruction='讲一个关于小狗豆豆的故事，要用到“风筝”和“公园”。'
    python3 sample.py --checkpoint=stories15M.bin --tokenizer=data/tok5000.model --score=story.txt

--checkpoint is a train.py ckpt.pt or a llama2.c .bin (version 0 or 1; version 2 is dequantized).
--tokenizer is a sentencepiece .model; for a ckpt.pt it defaults to {data_root}/tok{vocab_size}.model
of the training run. Settings are --key=value as in train.py. temperature 0 is greedy.
Generation stops at max_new_tokens or when the model ends the story (EOS or a new BOS).
--instruction wraps the text in the prompt template of an instruction-tuned model (train.py
--task=sft keeps it in the checkpoint; a .bin model uses instruct.TEMPLATE) and prints the story only.
--score=FILE prints the mean loss per token of the text in FILE and its perplexity instead, as
`./run model.bin -m score -f FILE` does: BOS + the text's tokens in windows of max_seq_len
inputs, the context restarted at each window, every token but BOS predicted once.
"""

import math
import os
import sys
from contextlib import nullcontext

import torch

from configurator import configure
from errors import die, first_line
from export import check_finite, load_checkpoint, load_model_bin

# -----------------------------------------------------------------------------
checkpoint = "out/ckpt.pt"
start = ""  # or "FILE:prompt.txt" to read the prompt from a file
instruction = ""  # an instruction for an instruction-tuned model (or "FILE:instruction.txt")
num_samples = 1  # number of samples to draw
max_new_tokens = 256  # number of tokens generated in each sample
temperature = 1.0  # 1.0 = no change, < 1.0 = less random, > 1.0 = more random, 0 = greedy
top_k = 300  # retain only the top_k most likely tokens, clamp others to have 0 probability; 0 = off
tokenizer = ""  # sentencepiece .model; empty: the training run's data_root/tok{vocab_size}.model
seed = 1337
device = "cpu"  # examples: 'cpu', 'cuda', 'cuda:0'
dtype = "float32"  # float32|bfloat16|float16 (autocast on cuda only)
score = ""  # a text file: print its mean loss per token and perplexity instead of sampling
# -----------------------------------------------------------------------------
config_keys = [k for k, v in globals().items()
               if not k.startswith("_") and isinstance(v, (int, float, bool, str))]
globals().update(configure({k: globals()[k] for k in config_keys}, sys.argv[1:], verbose=False))


def stream_decode(tok, ids, printed):
    """Print the text of ids beyond what was already printed. A trailing U+FFFD means a
    character whose bytes have not all been generated yet: hold it back until they have."""
    text = tok.decode(ids)
    stable = text.rstrip("\ufffd")
    if stable.startswith(printed) and len(stable) > len(printed):
        sys.stdout.write(stable[len(printed):])
        sys.stdout.flush()
        return stable
    return printed


if device.startswith("cuda") and not torch.cuda.is_available():
    die(f"device={device} but CUDA is not available; use --device=cpu")
if num_samples < 1 or max_new_tokens < 0 or not 0 <= temperature < float("inf") or top_k < 0:
    die("num_samples must be >= 1, and max_new_tokens, top_k and (a finite) temperature >= 0")
torch.manual_seed(seed)
ptdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype)
if ptdtype is None:
    die(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
ctx = nullcontext() if not device.startswith("cuda") else torch.amp.autocast(device_type="cuda", dtype=ptdtype)

# the model, and the tokenizer it was trained with
run = {}
try:
    if checkpoint.endswith(".pt"):
        model = load_checkpoint(checkpoint)
        run = torch.load(checkpoint, map_location="cpu", weights_only=True).get("config", {})
        if not tokenizer:
            if run.get("vocab_source") == "custom":
                tokenizer = os.path.join(run.get("data_root", "data"), f"tok{model.params.vocab_size}.model")
    else:
        model = load_model_bin(checkpoint)
    check_finite(model)  # NaN weights would end in a traceback from torch.multinomial, or in garbage
except ValueError as e:
    die(f"{checkpoint}: {e}" if checkpoint not in str(e) else str(e))
try:
    model.to(device)
except Exception as e:  # a typo such as --device=cpuu
    die(f"device={device} is not usable: {first_line(e)}")
model.eval()

try:
    from tokenizer import Tokenizer
    tok = Tokenizer(tokenizer) if tokenizer else Tokenizer()
except Exception as e:
    die(f"cannot load tokenizer {tokenizer or '(default)'}: {first_line(e)}")
if tok.n_words != model.params.vocab_size:
    die(f"tokenizer {tokenizer} has {tok.n_words} pieces but the model's vocab_size is {model.params.vocab_size}")



def score_text(path):
    """Mean loss per token of the text in path (nats) and its perplexity, in run.c's windows."""
    try:
        with open(path, "r", encoding="utf-8", newline="") as f:  # the bytes ./run reads: \r\n stays
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        die(f"cannot read text file {path}: {e}")
    ids = tok.encode(text, bos=True, eos=False)
    if len(ids) < 2:
        die("nothing to score: the text is empty")
    seq_len, total = model.params.max_seq_len, 0.0
    with torch.no_grad(), ctx:
        for w0 in range(0, len(ids) - 1, seq_len):
            x = torch.tensor(ids[w0:w0 + seq_len], device=device)[None]
            y = torch.tensor(ids[w0 + 1:w0 + seq_len + 1], device=device)[None]
            x = x[:, :y.size(1)]
            logits = model(x, y).float()
            total += torch.nn.functional.cross_entropy(logits[0].double(), y[0], reduction="sum").item()
    loss = total / (len(ids) - 1)
    print(f"{len(ids) - 1} tokens scored, loss {loss:.6f} per token, perplexity {math.exp(loss):.4f}")


if score:
    score_text(score)
    sys.exit(0)


def read_text(value, what):
    if value.startswith("FILE:"):
        try:
            with open(value[5:], "r", encoding="utf-8") as f:
                value = f.read()
        except (OSError, UnicodeDecodeError) as e:
            die(f"cannot read {what} file {value[5:]}: {e}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # bytes from the command line that are no UTF-8 arrive as lone surrogates
        die(f"the {what} is not valid UTF-8")
    return value


start = read_text(start, "prompt (--start)")
if instruction:
    if start:
        die("give --start or --instruction, not both")
    from instruct import TEMPLATE, render
    instruction = read_text(instruction, "instruction")
    if not instruction.strip():
        die("the instruction is empty")
    start = render(instruction, run.get("template") or TEMPLATE)
start_ids = tok.encode(start, bos=True, eos=False)
if len(start_ids) > model.params.max_seq_len:
    die(f"the prompt is {len(start_ids)} tokens, longer than the model's context of {model.params.max_seq_len}")

stop_ids = {tok.eos_id, tok.bos_id}
with torch.no_grad(), ctx:
    for k in range(num_samples):
        idx = torch.tensor(start_ids, dtype=torch.long, device=device)[None, ...]
        # an instruction's prompt is not echoed: the story is the answer, decoded on its own (as
        # sentencepiece decodes a story, without the leading space of its first piece)
        shown = len(start_ids) if instruction else 0
        printed = stream_decode(tok, start_ids[shown:], "")
        for _ in range(max_new_tokens):
            try:
                idx = model.generate(idx, 1, temperature=temperature, top_k=top_k or None)
            except RuntimeError as e:  # finite weights can still overflow (huge ones, a tiny temperature)
                if "probability tensor" not in str(e):
                    raise
                die(f"the model produced non-finite logits at position {idx.size(1)} (temperature {temperature} "
                     "too small, or weights too large?)")
            if int(idx[0, -1]) in stop_ids:
                idx = idx[:, :-1]
                break
            printed = stream_decode(tok, idx[0, shown:].tolist(), printed)
        # whatever is still held back (a character cut off by max_new_tokens) is printed as is
        text = tok.decode(idx[0, shown:].tolist())
        if text.startswith(printed):
            sys.stdout.write(text[len(printed):])
        sys.stdout.write("\n---------------\n")
        sys.stdout.flush()
