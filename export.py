"""
Write a Transformer to the llama2.c file formats, and read them back.

    python3 export.py out/model.bin --version 0 --checkpoint out/ckpt.pt   # legacy v0 (default)
    python3 export.py out/model_q80.bin --version 2 --checkpoint out/ckpt.pt
    python3 export.py out/hf --version -1 --dtype fp16 --checkpoint out/ckpt.pt
    python3 export.py out/model.gguf --version gguf --checkpoint out/ckpt.pt --tokenizer data/tok5000.model
    python3 export.py stories15M.gguf --version gguf --bin stories15M.bin --tokenizer tok5000.bin --gguf_type q8_0

Versions (byte layouts in FORMATS.md):
  0  legacy fp32, no magic: what the published stories15M/42M/110M.bin use; run.c reads it
  1  fp32 with a 256-byte header
  2  int8 Q8_0 (symmetric, per group of group_size values) for runq.c
 -1  Hugging Face Llama layout: a folder with config.json and pytorch_model.bin
 gguf  one file for llama.cpp / Ollama / LM Studio, weights F32, F16 or Q8_0, with the vocabulary

The classifier counts as shared when it is the same tensor as the token embedding (the
Transformer default); see model.untie_classifier. Exporting never modifies the model.
"""

import json
import os
import pickle
import struct
import warnings

import numpy as np
import torch

from errors import arg_parser, die, first_line, interrupted
from fileio import nbytes, write_atomic
from model import (MAX_SEQ_LEN, ModelArgs, Transformer, param_shapes, precompute_freqs_cis, shares_classifier,
                   untie_classifier)
from tokenizer import load_vocab

MAGIC = 0x616B3432  # "ak42" as a little-endian uint32
HEADER_BYTES = 256  # v1/v2 header size, padded with zeros

# -----------------------------------------------------------------------------
# writing


def serialize_fp32(file, tensor):
    """Write one tensor as little-endian float32, row-major."""
    d = tensor.detach().cpu().reshape(-1).to(torch.float32).numpy().astype("<f4", copy=False)
    file.write(d.tobytes())


def serialize_int8(file, tensor):
    d = tensor.detach().cpu().reshape(-1).numpy().astype(np.int8, copy=False)
    file.write(d.tobytes())


def quantize_q80(w, group_size):
    """Symmetric int8 quantization per group of group_size consecutive values.
    Returns (int8 values, float32 scales, max abs reconstruction error)."""
    assert w.numel() % group_size == 0, f"{w.numel()} values do not split into groups of {group_size}"
    w = w.detach().float().reshape(-1, group_size)
    wmax = torch.abs(w).max(dim=1).values
    scale = wmax / 127.0
    # an all-zero group has scale 0: divide by 1 instead so it quantizes to zeros, not NaN
    safe = torch.where(scale == 0, torch.ones_like(scale), scale)
    q = torch.round(w / safe[:, None]).to(torch.int8)
    err = torch.abs(q.float() * scale[:, None] - w).max().item()
    return q, scale, err


def model_header(model):
    """The 7 ints shared by every version: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len."""
    p = model.params
    n_kv_heads = p.n_heads if p.n_kv_heads is None else p.n_kv_heads
    hidden_dim = model.layers[0].feed_forward.w1.weight.shape[0]
    return [p.dim, hidden_dim, p.n_layers, p.n_heads, n_kv_heads, p.vocab_size, p.max_seq_len]


# the per-layer matrices, in the order every version writes them
MATMUL_WEIGHTS = ["attention.wq", "attention.wk", "attention.wv", "attention.wo",
                  "feed_forward.w1", "feed_forward.w2", "feed_forward.w3"]
# version 0 interleaves the norms with them
V0_LAYER_WEIGHTS = ["attention_norm", *MATMUL_WEIGHTS[:4], "ffn_norm", *MATMUL_WEIGHTS[4:]]


def _per_layer(model, name):
    """One kind of weight for all layers, e.g. 'attention.wq' -> [layer0.wq.weight, ...]."""
    out = []
    for layer in model.layers:
        m = layer
        for part in name.split("."):
            m = getattr(m, part)
        out.append(m.weight)
    return out


def legacy_export(model, filepath):
    """Version 0: header of 7 ints (vocab_size negative if the classifier is not shared), then fp32."""
    header = model_header(model)
    shared = shares_classifier(model)
    if not shared:
        header[5] = -header[5]  # on a local copy: never flip the model's own vocab_size
    head_size = model.params.dim // model.params.n_heads
    seq_len = model.params.max_seq_len
    with open(filepath, "wb") as f:
        f.write(struct.pack("<7i", *header))
        serialize_fp32(f, model.tok_embeddings.weight)
        for name in V0_LAYER_WEIGHTS:
            for w in _per_layer(model, name):
                serialize_fp32(f, w)
        serialize_fp32(f, model.norm.weight)
        # RoPE tables: kept only for compatibility, readers skip them
        freqs_cos, freqs_sin = precompute_freqs_cis(head_size, seq_len)
        serialize_fp32(f, freqs_cos[:seq_len])
        serialize_fp32(f, freqs_sin[:seq_len])
        if not shared:
            serialize_fp32(f, model.output.weight)


def _v1v2_header(f, model, version, extra=b""):
    f.write(struct.pack("<I", MAGIC))
    f.write(struct.pack("<i", version))
    f.write(struct.pack("<7i", *model_header(model)))
    f.write(struct.pack("<B", int(shares_classifier(model))))
    f.write(extra)
    pad = HEADER_BYTES - f.tell()
    assert pad >= 0
    f.write(b"\0" * pad)


def _norm_weights(model):
    """The RMSNorm weights in v1/v2 order: all attention norms, all ffn norms, the final norm."""
    return [*_per_layer(model, "attention_norm"), *_per_layer(model, "ffn_norm"), model.norm.weight]


def _matmul_weights(model):
    """The matrices in v1/v2 order: embedding, wq..w3 for all layers, the classifier if unshared."""
    weights = [model.tok_embeddings.weight]
    for name in MATMUL_WEIGHTS:
        weights.extend(_per_layer(model, name))
    if not shares_classifier(model):
        weights.append(model.output.weight)
    return weights


def version1_export(model, filepath):
    """Version 1: 256-byte header, then all norms first, then the matmul weights, all fp32."""
    weights = _norm_weights(model) + _matmul_weights(model)
    with open(filepath, "wb") as f:
        _v1v2_header(f, model, 1)
        for w in weights:
            serialize_fp32(f, w)


def q80_group_size(dim, hidden_dim):
    # runq.c's matmul takes groups within each row, so the group must divide both row lengths
    group_size = 64
    while dim % group_size != 0 or hidden_dim % group_size != 0:
        group_size //= 2
    return group_size


def version2_export(model, filepath, group_size=None):
    """Version 2: header (+ group_size), fp32 norms, then each matmul weight as int8 + fp32 scales."""
    if group_size is None:
        group_size = q80_group_size(model.params.dim, model_header(model)[1])
    norms = _norm_weights(model)
    weights = _matmul_weights(model)
    for w in weights:
        if w.numel() % group_size != 0:
            raise ValueError(f"a weight with {w.numel()} values does not split into groups of {group_size}")
    with open(filepath, "wb") as f:
        _v1v2_header(f, model, 2, extra=struct.pack("<i", group_size))
        for w in norms:
            serialize_fp32(f, w)
        errs = []
        for w in weights:
            q, s, err = quantize_q80(w, group_size)
            serialize_int8(f, q)
            serialize_fp32(f, s)
            errs.append(err)
    print(f"Q8_0, group size {group_size}, max quantization error {max(errs):.6f}")


def _hf_permute(w, n_heads, dim1, dim2):
    """From our interleaved-pair RoPE layout to HF's rotate_half layout (first half / second half)."""
    return w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)


def hf_export(model, dirpath, dtype=torch.float16):
    """Hugging Face LlamaForCausalLM layout: dirpath/config.json + dirpath/pytorch_model.bin."""
    p = model.params
    header = model_header(model)
    dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len = header
    head_dim = dim // n_heads
    kv_dim = n_kv_heads * head_dim
    sd = {}

    def put(name, t):
        sd[name] = t.detach().cpu().to(dtype).clone().contiguous()

    put("model.embed_tokens.weight", model.tok_embeddings.weight)
    put("model.norm.weight", model.norm.weight)
    for i, layer in enumerate(model.layers):
        pre = f"model.layers.{i}."
        put(pre + "input_layernorm.weight", layer.attention_norm.weight)
        put(pre + "self_attn.q_proj.weight", _hf_permute(layer.attention.wq.weight.detach(), n_heads, dim, dim))
        put(pre + "self_attn.k_proj.weight", _hf_permute(layer.attention.wk.weight.detach(), n_kv_heads, kv_dim, dim))
        put(pre + "self_attn.v_proj.weight", layer.attention.wv.weight)
        put(pre + "self_attn.o_proj.weight", layer.attention.wo.weight)
        put(pre + "post_attention_layernorm.weight", layer.ffn_norm.weight)
        put(pre + "mlp.gate_proj.weight", layer.feed_forward.w1.weight)
        put(pre + "mlp.down_proj.weight", layer.feed_forward.w2.weight)
        put(pre + "mlp.up_proj.weight", layer.feed_forward.w3.weight)
    put("lm_head.weight", model.output.weight)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab_size,
        "hidden_size": dim,
        "intermediate_size": hidden_dim,
        "num_hidden_layers": n_layers,
        "num_attention_heads": n_heads,
        "num_key_value_heads": n_kv_heads,
        "max_position_embeddings": seq_len,
        "rms_norm_eps": p.norm_eps,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": shares_classifier(model),
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": {torch.float16: "float16", torch.float32: "float32",
                        torch.bfloat16: "bfloat16"}[dtype],
    }
    os.makedirs(dirpath, exist_ok=True)
    write_atomic(lambda tmp: torch.save(sd, tmp), os.path.join(dirpath, "pytorch_model.bin"), nbytes(sd))

    def write_config(tmp):
        with open(tmp, "w") as f:
            json.dump(config, f, indent=2)
    write_atomic(write_config, os.path.join(dirpath, "config.json"))


GGUF_TYPES = ["f32", "f16", "q8_0"]
# our parameter names -> llama.cpp's, per layer
GGUF_LAYER_NAMES = {"attention_norm": "attn_norm", "attention.wq": "attn_q", "attention.wk": "attn_k",
                    "attention.wv": "attn_v", "attention.wo": "attn_output", "ffn_norm": "ffn_norm",
                    "feed_forward.w1": "ffn_gate", "feed_forward.w2": "ffn_down", "feed_forward.w3": "ffn_up"}


def gguf_export(model, filepath, tokenizer_path, gguf_type="f32"):
    """GGUF, architecture llama, with the vocabulary (a sentencepiece .model or run.c's .bin) as a
    llama/sentencepiece one. wq and wk go in unpermuted: llama2.c and llama.cpp's llama both rotate
    adjacent pairs (x[2i], x[2i+1]); only Hugging Face's rotate_half layout needs _hf_permute.
    Norms stay F32 (as llama.cpp's converter does); F16/Q8_0 apply to the matrices, and a matrix
    whose rows do not split into Q8_0's blocks of 32 stays F32."""
    import gguf
    Q = gguf.GGMLQuantizationType
    dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len = model_header(model)
    vocab = load_vocab(tokenizer_path, vocab_size)
    w = gguf.GGUFWriter(filepath, "llama")
    w.add_context_length(seq_len)
    w.add_embedding_length(dim)
    w.add_block_count(n_layers)
    w.add_feed_forward_length(hidden_dim)
    w.add_head_count(n_heads)
    w.add_head_count_kv(n_kv_heads)
    w.add_rope_dimension_count(dim // n_heads)
    w.add_rope_freq_base(10000.0)  # model.precompute_freqs_cis's theta
    w.add_layer_norm_rms_eps(model.params.norm_eps)
    w.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                     "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[gguf_type])
    w.add_tokenizer_model("llama")
    w.add_token_list(vocab["pieces"])
    w.add_token_scores(vocab["scores"])
    w.add_token_types(vocab["types"])
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(bool(vocab["add_dummy_prefix"]))
    w.add_remove_extra_whitespaces(bool(vocab["remove_extra_whitespaces"]))

    def put(name, t):
        a = t.detach().cpu().to(torch.float32).numpy()
        if a.ndim == 1 or gguf_type == "f32" or (gguf_type == "q8_0" and a.shape[-1] % 32 != 0):
            w.add_tensor(name, a)
        elif gguf_type == "f16":
            w.add_tensor(name, a.astype(np.float16))
        else:
            w.add_tensor(name, gguf.quants.quantize(a, Q.Q8_0), raw_dtype=Q.Q8_0)

    put("token_embd.weight", model.tok_embeddings.weight)
    for i, layer in enumerate(model.layers):
        for ours, theirs in GGUF_LAYER_NAMES.items():
            put(f"blk.{i}.{theirs}.weight", _per_layer(model, ours)[i])
    put("output_norm.weight", model.norm.weight)
    if not shares_classifier(model):  # a shared classifier is token_embd again: llama.cpp falls back to it
        put("output.weight", model.output.weight)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def model_export(model, filepath, version=0, dtype=torch.float32, tokenizer=None, gguf_type="f32"):
    """Export model to filepath in the given version (0, 1, 2, -1 = Hugging Face, or "gguf";
    dtype for -1 only, tokenizer and gguf_type for gguf only)."""
    if version == "gguf":
        gguf_export(model, filepath, tokenizer, gguf_type)
    elif version == 0:
        legacy_export(model, filepath)
    elif version == 1:
        version1_export(model, filepath)
    elif version == 2:
        version2_export(model, filepath)
    elif version == -1:
        hf_export(model, filepath, dtype)
    else:
        raise ValueError(f"unknown export version {version} (expected 0, 1, 2, -1 or gguf)")

def export_size(model, version, dtype=torch.float32, gguf_type="f32"):
    """About how many bytes model_export writes (what a "no space left" message says is needed)."""
    per_value = {0: 4, 1: 4, 2: 1.1, -1: torch.empty(0, dtype=dtype).element_size()}.get(version)
    if version == "gguf":
        per_value = {"f32": 4, "f16": 2, "q8_0": 1.1}[gguf_type]
    return int(sum(p.numel() for p in model.parameters()) * (per_value or 4))

# -----------------------------------------------------------------------------
# reading


def read_bin_header(path):
    """Parse and validate a .bin header. Returns dict(version, dim, hidden_dim, n_layers, n_heads,
    n_kv_heads, vocab_size, seq_len, shared, group_size, offset, expected_size). Raises ValueError."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
    except OSError as e:
        raise ValueError(f"cannot read model file {path}: {e.strerror or e}") from None
    if len(head) < 28:
        raise ValueError(f"{path}: too short for a model file ({size} bytes)")
    (magic,) = struct.unpack_from("<I", head, 0)
    if magic == MAGIC:
        if len(head) < HEADER_BYTES:
            raise ValueError(f"{path}: truncated header ({size} bytes, need {HEADER_BYTES})")
        (version,) = struct.unpack_from("<i", head, 4)
        if version not in (1, 2):
            raise ValueError(f"{path}: unsupported model file version {version} (expected 0, 1 or 2)")
        cfg = struct.unpack_from("<7i", head, 8)
        shared = bool(head[36])
        group_size = struct.unpack_from("<i", head, 37)[0] if version == 2 else 0
        offset = HEADER_BYTES
        if head[36] not in (0, 1):
            raise ValueError(f"{path}: bad shared_classifier flag {head[36]}")
    else:
        version = 0
        cfg = struct.unpack_from("<7i", head, 0)
        shared = cfg[5] > 0
        cfg = cfg[:5] + (abs(cfg[5]),) + cfg[6:]
        group_size = 0
        offset = 28
    dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len = cfg
    names = ["dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"]
    for name, v in zip(names, cfg):
        if v <= 0:
            raise ValueError(f"{path}: not a llama2.c model file (header field {name} = {v})")
    if seq_len > MAX_SEQ_LEN:  # v1/v2 files do not hold the RoPE tables this would allocate
        raise ValueError(f"{path}: header seq_len {seq_len} is beyond the limit of {MAX_SEQ_LEN} (model.MAX_SEQ_LEN)")
    if dim % n_heads != 0 or (dim // n_heads) % 2 != 0:
        raise ValueError(f"{path}: not a llama2.c model file (header: dim {dim} is not n_heads {n_heads} "
                         "x an even head size)")
    if n_heads % n_kv_heads != 0:
        raise ValueError(f"{path}: not a llama2.c model file (header: n_heads {n_heads} is not a multiple "
                         f"of n_kv_heads {n_kv_heads})")
    head_size = dim // n_heads
    kv_dim = n_kv_heads * head_size
    L = n_layers
    n_matmul = vocab_size * dim + L * (dim * dim + 2 * kv_dim * dim + dim * dim + 3 * hidden_dim * dim)
    n_cls = 0 if shared else vocab_size * dim
    n_norm = 2 * L * dim + dim
    if version == 0:
        expected = offset + 4 * (n_matmul + n_cls + n_norm + seq_len * head_size)  # + cos/sin tables
    elif version == 1:
        expected = offset + 4 * (n_matmul + n_cls + n_norm)
    else:
        if group_size <= 0 or dim % group_size != 0 or hidden_dim % group_size != 0:
            raise ValueError(f"{path}: bad group_size {group_size} for dim {dim}, hidden_dim {hidden_dim}")
        nq = n_matmul + n_cls
        expected = offset + 4 * n_norm + nq + 4 * (nq // group_size)
    if size != expected:
        raise ValueError(f"{path}: file size {size} bytes does not match its header "
                         f"(version {version}, expected {expected} bytes): truncated or not a model file")
    return dict(version=version, dim=dim, hidden_dim=hidden_dim, n_layers=n_layers, n_heads=n_heads,
                n_kv_heads=n_kv_heads, vocab_size=vocab_size, seq_len=seq_len, shared=shared,
                group_size=group_size, offset=offset, expected_size=expected)


def load_model_bin(path):
    """Read a v0/v1/v2 .bin into a new Transformer (float32, CPU, eval mode). ValueError on a bad file."""
    h = read_bin_header(path)
    dim, L, hidden_dim = h["dim"], h["n_layers"], h["hidden_dim"]
    head_size = dim // h["n_heads"]
    V = h["vocab_size"]
    args = ModelArgs(dim=dim, n_layers=L, n_heads=h["n_heads"], n_kv_heads=h["n_kv_heads"],
                     vocab_size=V, hidden_dim=hidden_dim, multiple_of=32, max_seq_len=h["seq_len"])
    model = Transformer(args)
    if not h["shared"]:
        untie_classifier(model)
    data = np.memmap(path, dtype=np.uint8, mode="r")
    pos = h["offset"]

    def take_f32(n):
        nonlocal pos
        t = torch.from_numpy(np.frombuffer(data, dtype="<f4", count=n, offset=pos).astype(np.float32))
        pos += 4 * n
        return t

    def take_q80(n):
        nonlocal pos
        gs = h["group_size"]
        q = np.frombuffer(data, dtype=np.int8, count=n, offset=pos).astype(np.float32)
        pos += n
        s = np.frombuffer(data, dtype="<f4", count=n // gs, offset=pos).astype(np.float32)
        pos += 4 * (n // gs)
        return torch.from_numpy((q.reshape(-1, gs) * s[:, None]).reshape(-1))

    def put(param, take):
        param.copy_(take(param.numel()).view(param.shape))

    with torch.no_grad():
        if h["version"] == 0:
            put(model.tok_embeddings.weight, take_f32)
            for name in V0_LAYER_WEIGHTS:
                for w in _per_layer(model, name):
                    put(w, take_f32)
            put(model.norm.weight, take_f32)
            pos += 4 * h["seq_len"] * head_size  # skip the RoPE cos/sin tables
            if not h["shared"]:
                put(model.output.weight, take_f32)
        else:
            # the same order version1_export / version2_export write
            for w in _norm_weights(model):
                put(w, take_f32)
            take = take_f32 if h["version"] == 1 else take_q80
            for w in _matmul_weights(model):
                put(w, take)
    assert pos == h["expected_size"], (pos, h["expected_size"])
    del data
    model.eval()
    return model


def torch_load(path, map_location="cpu"):
    """torch.load(weights_only=True) without torch's UserWarning about a plain pickle file: the caller
    says in one line why such a file cannot be read."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.load(path, map_location=map_location, weights_only=True)


def check_finite(model):
    """ValueError naming the first tensor with a NaN or inf: exported, it would only make NaN logits."""
    for name, t in model.state_dict().items():
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            raise ValueError(f"the model's weights are not finite: {name} has {bad} NaN or inf values "
                             "(a diverged training run?)")


class ShapeError(ValueError):
    """Weights that do not fit the model settings stored with them."""


def check_shapes(args, state_dict):
    """ShapeError unless state_dict holds exactly the weights of Transformer(args), shape by shape.
    Runs before the model is built: model_args claiming n_layers=10**9 cost nothing."""
    if args.max_seq_len > MAX_SEQ_LEN:
        raise ShapeError(f"max_seq_len={args.max_seq_len} is beyond the limit of {MAX_SEQ_LEN} (model.MAX_SEQ_LEN)")
    layers = {k.split(".")[1] for k in state_dict if k.startswith("layers.")}
    if len(layers) != args.n_layers:
        raise ShapeError(f"n_layers={args.n_layers} but the weights hold {len(layers)} layers")
    want = param_shapes(args)
    for name, shape in want.items():
        if name not in state_dict:
            raise ShapeError(f"Missing key {name}")
        got = tuple(getattr(state_dict[name], "shape", ()))
        if got != shape:
            raise ShapeError(f"size mismatch for {name}: the weights are {got}, the settings make it {shape}")
    extra = [k for k in state_dict if k not in want]
    if extra:
        raise ShapeError(f"Unexpected key {extra[0]}")


def load_checkpoint(checkpoint):
    """Build a Transformer from a train.py ckpt.pt. ValueError on a bad file."""
    try:
        ckpt = torch_load(checkpoint)
        args = ModelArgs(**ckpt["model_args"])
        for k in ("dim", "n_layers", "n_heads", "vocab_size", "max_seq_len"):
            if not (isinstance(getattr(args, k), int) and getattr(args, k) > 0):
                raise ValueError(f"model_args {k} = {getattr(args, k)!r}")
        # torch.compile wraps the model and prefixes its keys
        state_dict = {k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()}
        tied = torch.equal(state_dict["output.weight"], state_dict["tok_embeddings.weight"])
        check_shapes(args, state_dict)
        model = Transformer(args)
        if not tied:
            untie_classifier(model)
    except FileNotFoundError:
        raise ValueError(f"checkpoint not found: {checkpoint}") from None
    except KeyError as e:
        raise ValueError(f"cannot load checkpoint {checkpoint}: it has no {e} entry (not a train.py checkpoint)") from None
    except pickle.UnpicklingError:  # torch's own message would advise weights_only=False
        raise ValueError(f"cannot load checkpoint {checkpoint}: not a train.py checkpoint (torch.load "
                         "with weights_only=True cannot read it)") from None
    except ShapeError as e:
        raise ValueError(f"cannot load checkpoint {checkpoint}: its weights do not fit its model_args ({e})") from None
    except Exception as e:
        raise ValueError(f"cannot load checkpoint {checkpoint}: "
                         f"{first_line(e, with_type=True)}") from None
    try:
        model.load_state_dict(state_dict)  # strict: a missing weight must not stay random
    except RuntimeError as e:
        detail = " ".join(str(e).split())
        detail = detail.removeprefix("Error(s) in loading state_dict for Transformer: ")
        raise ValueError(f"cannot load checkpoint {checkpoint}: its weights do not fit its model_args "
                         f"({detail[:200]})") from None
    model.eval()
    return model


def main(argv=None):
    parser = arg_parser("export a model to the llama2.c formats or GGUF")
    parser.add_argument("filepath", type=str, help="the output filepath (a folder for --version -1)")
    parser.add_argument("--version", default="0", choices=["-1", "0", "1", "2", "gguf"], help="the version to export with")
    parser.add_argument("--dtype", type=str, default="fp32", choices=["fp16", "fp32"], help="dtype of the Hugging Face export")
    parser.add_argument("--gguf_type", default="f32", choices=GGUF_TYPES, help="weight type of the GGUF export")
    parser.add_argument("--tokenizer", type=str, help="gguf: the vocabulary, a sentencepiece .model or run.c's tokenizer .bin")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--checkpoint", type=str, help="model checkpoint, .pt file")
    group.add_argument("--bin", type=str, help="a llama2.c .bin (v0/v1/v2) to convert")
    args = parser.parse_args(argv)
    version = args.version if args.version == "gguf" else int(args.version)
    if version == "gguf" and not args.tokenizer:
        parser.error("--version gguf needs --tokenizer (the .model, or the tokenizer .bin used with ./run -z)")
    dtype = {"fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    try:
        model = load_checkpoint(args.checkpoint) if args.checkpoint else load_model_bin(args.bin)
        check_finite(model)
        if version == -1:
            model_export(model, args.filepath, version, dtype)
        elif os.path.isdir(args.filepath):
            raise ValueError(f"{args.filepath} is a folder; give the path of the file to write")
        else:
            write_atomic(lambda tmp: model_export(model, tmp, version, dtype, args.tokenizer, args.gguf_type),
                         args.filepath, export_size(model, version, dtype, args.gguf_type))
    except (ValueError, OSError) as e:
        die(e)
    except KeyboardInterrupt:
        interrupted("interrupted; nothing was written")
    print(f"wrote {args.filepath} (version {version}{', ' + args.gguf_type if version == 'gguf' else ''})")


if __name__ == "__main__":
    main()
