"""
The sentencepiece tokenizer, and its export to the flat .bin that run.c reads with -z.

    python3 tokenizer.py --tokenizer-model=data/tok5000.model    # writes data/tok5000.bin

.bin layout (see FORMATS.md): uint32 max_token_length, then per token id: float32 score,
int32 byte length n, n raw bytes. "▁" becomes a space, BOS is written as "\\n<s>\\n" and EOS as
"\\n</s>\\n"; byte-fallback pieces stay literally "<0xAB>" (run.c turns them into the raw byte).
After the pieces comes a 12-byte trailer with the normalizer settings run.c must copy (the
original run.c reads exactly vocab_size pieces and never sees it); vocabularies run.c cannot
encode exactly (unigram, non-identity normalization, ...) are refused.

fast_encoder(model_path) returns a FastEncoder over bpe.c's libbpe.so (`make bpe`) that encodes
whole batches of documents exactly as sentencepiece does, several times faster, or None with the
reason when the library is not built or the model uses a feature it does not implement.
"""

import ctypes
import os
import struct

import numpy as np
from sentencepiece import SentencePieceProcessor

from errors import arg_parser, die, first_line
from fileio import write_bytes_atomic

TOKENIZER_MODEL = os.path.join("data", "tok5000.model")  # the Chinese 5000-piece vocabulary
# the .bin trailer: magic, version, add_dummy_prefix, remove_extra_whitespaces, 2 zero bytes
TRAILER = struct.Struct("<4siBB2x")
TRAILER_MAGIC, TRAILER_VERSION = b"spnm", 1
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6  # sentencepiece piece types


class Tokenizer:
    def __init__(self, tokenizer_model=None):
        model_path = tokenizer_model if tokenizer_model else TOKENIZER_MODEL
        if os.path.isdir(model_path):
            raise ValueError(f"tokenizer model {model_path} is a folder; give the path of the .model file")
        if not os.path.isfile(model_path):
            raise FileNotFoundError(f"tokenizer model {model_path} not found "
                                    "(train one with: python3 tinystories.py train_vocab --vocab_size=N)")
        self.sp_model = SentencePieceProcessor()
        try:
            self.sp_model.Load(model_path)
        except (OSError, RuntimeError) as e:
            raise ValueError(f"{model_path} is not a sentencepiece model ({first_line(e)})") from None
        self.model_path = model_path
        self.n_words = self.sp_model.vocab_size()
        self.bos_id = self.sp_model.bos_id()
        self.eos_id = self.sp_model.eos_id()
        self.pad_id = self.sp_model.pad_id()

    def encode(self, s, bos, eos):
        assert type(s) is str
        t = self.sp_model.encode(s)
        if bos:
            t = [self.bos_id] + t
        if eos:
            t = t + [self.eos_id]
        return t

    def decode(self, t):
        return self.sp_model.decode(list(t))

    def export(self, out_path=None):
        """Write the .bin next to the model (data/tok5000.model -> data/tok5000.bin); returns its path."""
        spec = read_model_spec(self.model_path)
        why = encoder_mismatch(spec)
        if why:
            raise ValueError(f"{self.model_path}: run.c cannot encode text the way this vocabulary does ({why})")
        tokens, scores = [], []
        for i in range(self.n_words):
            t = self.sp_model.id_to_piece(i)
            if i == self.bos_id:
                t = "\n<s>\n"
            elif i == self.eos_id:
                t = "\n</s>\n"
            tokens.append(t.replace("\u2581", " ").encode("utf-8"))
            scores.append(self.sp_model.get_score(i))
        max_token_length = max(len(t) for t in tokens)
        out_path = out_path or os.path.splitext(self.model_path)[0] + ".bin"
        chunks = [struct.pack("<I", max_token_length)]
        for b, score in zip(tokens, scores):
            chunks += [struct.pack("<fi", score, len(b)), b]
        chunks.append(TRAILER.pack(TRAILER_MAGIC, TRAILER_VERSION, int(bool(spec["add_dummy_prefix"])),
                                   int(bool(spec["remove_extra_whitespaces"]))))
        write_bytes_atomic(out_path, chunks)  # a crash never leaves half a file
        return out_path


def read_tokenizer_bin(path, vocab_size):
    """Read run.c's tokenizer .bin as run.c does: vocab_size pieces, then nothing or the trailer.
    Returns dict(pieces=[bytes], scores=[float], add_dummy_prefix, remove_extra_whitespaces, trailer).
    A file without trailer (the published tok5000.bin) means: dummy prefix, spaces kept."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"cannot read tokenizer {path}: {e.strerror or e}") from None
    if len(data) < 4:
        raise ValueError(f"tokenizer {path} is truncated ({len(data)} bytes)")
    pos, pieces, scores = 4, [], []
    for i in range(vocab_size):
        if len(data) - pos < 8:
            raise ValueError(f"tokenizer {path} ends after {i} of the model's {vocab_size} pieces "
                             "(wrong tokenizer for this model?)")
        score, n = struct.unpack_from("<fi", data, pos)
        pos += 8
        if n < 0 or n > len(data) - pos:
            raise ValueError(f"tokenizer {path}: piece {i} has a bad length {n} (file corrupt or truncated)")
        pieces.append(data[pos:pos + n])
        scores.append(score)
        pos += n
    out = dict(pieces=pieces, scores=scores, add_dummy_prefix=1, remove_extra_whitespaces=0, trailer=False)
    rest = data[pos:]
    if rest:
        ok = len(rest) == TRAILER.size
        if ok:
            magic, version, prefix, extra = TRAILER.unpack(rest)
            ok = magic == TRAILER_MAGIC and version == TRAILER_VERSION and prefix <= 1 and extra <= 1 \
                and rest[-2:] == b"\0\0"
        if not ok:
            raise ValueError(f"tokenizer {path} has {len(rest)} bytes after the model's {vocab_size} pieces "
                             "(wrong tokenizer for this model?)")
        out.update(add_dummy_prefix=prefix, remove_extra_whitespaces=extra, trailer=True)
    return out


def load_vocab(path, vocab_size):
    """The vocabulary of a sentencepiece .model or a run.c .bin as sentencepiece sees it: pieces
    (with "▁"), scores, piece types (NORMAL, UNKNOWN, CONTROL, BYTE), the normalizer flags. For
    formats that carry a vocabulary of their own (GGUF)."""
    if path.endswith(".model"):
        spec = read_model_spec(path)
        why = encoder_mismatch(spec)
        if why:
            raise ValueError(f"{path}: run.c and llama.cpp cannot encode text the way this vocabulary does ({why})")
        if len(spec["pieces"]) != vocab_size:
            raise ValueError(f"{path} has {len(spec['pieces'])} pieces, the model {vocab_size}")
        return dict(pieces=[p["piece"] for p in spec["pieces"]], scores=[p["score"] for p in spec["pieces"]],
                    types=[p["type"] for p in spec["pieces"]], add_dummy_prefix=spec["add_dummy_prefix"],
                    remove_extra_whitespaces=spec["remove_extra_whitespaces"])
    b = read_tokenizer_bin(path, vocab_size)
    pieces, types = [], []
    for i, raw in enumerate(b["pieces"]):
        if i in (1, 2):  # BOS/EOS, written as "\n<s>\n" / "\n</s>\n"
            pieces.append(raw.decode("utf-8", "replace").strip())
            types.append(CONTROL)
            continue
        try:
            piece = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"tokenizer {path}: piece {i} is not valid UTF-8") from None
        is_byte = len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">") and \
            all(c in "0123456789ABCDEFabcdef" for c in piece[3:5])
        pieces.append(piece if is_byte else piece.replace(" ", "\u2581"))
        types.append(UNKNOWN if i == 0 else BYTE if is_byte else NORMAL)
    return dict(pieces=pieces, scores=b["scores"], types=types, add_dummy_prefix=b["add_dummy_prefix"],
                remove_extra_whitespaces=b["remove_extra_whitespaces"])


# -----------------------------------------------------------------------------
# the fast batch encoder (bpe.c)

LIBBPE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libbpe.so")


# A sentencepiece .model is a protobuf ModelProto. sentencepiece ships its generated reader
# (sentencepiece_model_pb2), but that needs the protobuf package at the very runtime version it was
# generated for (7.36 for sentencepiece 0.2.3), which users of older protobufs don't have: these
# few lines read the three messages we need (pieces, TrainerSpec, NormalizerSpec) without it.
def _proto_fields(buf):
    """(field number, value) of one protobuf message: ints for varints, bytes for strings and
    messages, 4 raw bytes for fixed32."""
    i, n = 0, len(buf)

    def varint():
        nonlocal i
        v = shift = 0
        while True:
            if i >= n:
                raise ValueError("truncated protobuf")
            b = buf[i]
            i += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return v
    while i < n:
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            yield field, varint()
        elif wire == 2:
            size = varint()
            if i + size > n:
                raise ValueError("truncated protobuf")
            yield field, buf[i:i + size]
            i += size
        elif wire == 5:
            yield field, buf[i:i + 4]
            i += 4
        elif wire == 1:
            yield field, buf[i:i + 8]
            i += 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _read_piece(m):
    """A SentencePiece message {piece = 1, score = 2, type = 3} as a dict. sentencepiece writes them
    as 0x0A len piece 0x15 float [0x18 type]: read that layout directly (a model has tens of
    thousands), anything else field by field."""
    n = m[1] if len(m) > 1 else 0x80
    if m[0] == 0x0A and n < 0x80 and len(m) in (7 + n, 9 + n) and m[2 + n] == 0x15 and \
            (len(m) == 7 + n or (m[7 + n] == 0x18 and m[8 + n] < 0x80)):
        return dict(piece=m[2:2 + n].decode("utf-8"), score=struct.unpack_from("<f", m, 3 + n)[0],
                    type=m[8 + n] if len(m) == 9 + n else NORMAL)
    f = {1: b"", 2: bytes(4), 3: NORMAL}
    f.update(_proto_fields(m))
    return dict(piece=f[1].decode("utf-8"), score=struct.unpack("<f", f[2])[0], type=f[3])


def read_model_spec(model_path):
    """The parts of a sentencepiece ModelProto that decide how text is encoded: pieces (string,
    score, type), model_type and treat_whitespace_as_suffix (TrainerSpec), and the normalizer."""
    with open(model_path, "rb") as f:
        buf = f.read()
    pieces = []
    spec = dict(model_type=1, treat_whitespace_as_suffix=0, normalizer_name="", charsmap=b"",
                add_dummy_prefix=1, remove_extra_whitespaces=1, escape_whitespaces=1)  # proto defaults
    for field, value in _proto_fields(buf):
        if field == 1:
            pieces.append(_read_piece(value))
        elif field == 2:  # TrainerSpec
            for f, v in _proto_fields(value):
                if f == 3:
                    spec["model_type"] = v
                elif f == 24:
                    spec["treat_whitespace_as_suffix"] = v
        elif field == 3:  # NormalizerSpec
            names = {1: "normalizer_name", 2: "charsmap", 3: "add_dummy_prefix", 4: "remove_extra_whitespaces",
                     5: "escape_whitespaces"}
            for f, v in _proto_fields(value):
                if f in names:
                    spec[names[f]] = v.decode("utf-8") if f == 1 else v
    spec["pieces"] = pieces
    return spec


def encoder_mismatch(spec):
    """Why run.c / bpe.c cannot encode exactly as this sentencepiece model does, or None. Both copy
    BPE with the identity normalizer (add_dummy_prefix and remove_extra_whitespaces either way)."""
    if spec["model_type"] != 2:
        return "not a BPE model"
    if spec["charsmap"] or spec["normalizer_name"] not in ("identity", ""):
        return f"normalization rule {spec['normalizer_name']!r} (only identity is implemented)"
    if spec["treat_whitespace_as_suffix"] or not spec["escape_whitespaces"]:
        return "unusual whitespace settings"
    types = [p["type"] for p in spec["pieces"]]
    if USER_DEFINED in types or UNUSED in types:
        return "user-defined or unused pieces"
    if sum(t == BYTE for t in types) != 256:
        return "no byte fallback pieces"
    return None


class FastEncoder:
    """Batches of documents -> one uint16 array of [BOS] + ids + [EOS] per document, in C."""

    def __init__(self, lib, handle, sp):
        self.lib, self.handle, self.sp = lib, handle, sp

    def __del__(self):
        if getattr(self, "handle", None):
            self.lib.bpe_free(self.handle)
            self.handle = None

    def encode_docs(self, texts, bos=True, eos=True):
        """[BOS] + encode(text) + [EOS] for every text, concatenated. Every text must be valid UTF-8
        (no lone surrogates). Releases the GIL while encoding, so threads run in parallel."""
        if not texts:
            return np.empty(0, dtype=np.uint16)
        blobs = [t.encode("utf-8") for t in texts]
        data = b"".join(blobs)
        offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs)), out=offsets[1:])
        cap = len(data) + 2 * data.count(b" ") + 5 * len(blobs)  # ids <= normalized bytes, + BOS/EOS
        out = np.empty(cap, dtype=np.uint16)
        n = self.lib.bpe_encode(self.handle, data, offsets.ctypes.data, len(blobs),
                                self.sp.bos_id() if bos else -1, self.sp.eos_id() if eos else -1,
                                out.ctypes.data, cap)
        if n < 0:
            raise MemoryError("bpe.c ran out of memory" if n == -1 else "bpe.c output buffer too small")
        return out[:n].copy()


def _load_lib():
    lib = ctypes.CDLL(LIBBPE)
    P, i32 = ctypes.c_void_p, ctypes.c_int
    lib.bpe_new.restype = P
    lib.bpe_new.argtypes = [i32, ctypes.c_char_p, P, P, P, P, i32, i32, P]
    lib.bpe_free.argtypes = [P]
    lib.bpe_encode.restype = ctypes.c_long
    lib.bpe_encode.argtypes = [P, ctypes.c_char_p, P, i32, i32, i32, P, ctypes.c_long]
    return lib


def fast_encoder(model_path, sp=None):
    """(FastEncoder, None) when bpe.c can encode with this model exactly as sentencepiece does,
    else (None, the reason). sp: the model's SentencePieceProcessor, if already loaded."""
    if not os.path.isfile(LIBBPE):
        return None, "libbpe.so is not built (make bpe)"
    try:
        lib = _load_lib()
    except OSError as e:
        return None, f"cannot load {LIBBPE}: {e}"
    try:
        spec = read_model_spec(model_path)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        return None, f"cannot read {model_path}: {e}"
    sp = sp or SentencePieceProcessor(model_file=model_path)
    pieces = spec["pieces"]
    why = encoder_mismatch(spec)
    if why:
        return None, why
    if sp.bos_id() < 0 or sp.eos_id() < 0:
        return None, "no BOS/EOS pieces"
    if len(pieces) != sp.vocab_size() or len(pieces) > 65536:
        return None, "pieces do not match sentencepiece's"
    types = [p["type"] for p in pieces]
    if [p["piece"] for p in pieces] != sp.id_to_piece(list(range(len(pieces)))):  # the hand-read proto agrees
        return None, "pieces do not match sentencepiece's"
    byte_ids = [-1] * 256
    for i, p in enumerate(pieces):
        if p["type"] == BYTE and len(p["piece"]) == 6 and p["piece"].startswith("<0x"):
            byte_ids[int(p["piece"][3:5], 16)] = i
    if -1 in byte_ids:
        return None, "no byte fallback pieces"
    blobs = [p["piece"].encode("utf-8") for p in pieces]
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    np.cumsum([len(x) for x in blobs], out=offsets[1:])
    scores = np.array([p["score"] for p in pieces], dtype=np.float32)
    types, c_bytes = np.array(types, dtype=np.int32), np.array(byte_ids, dtype=np.int32)
    bad = ctypes.c_int32(-1)
    handle = lib.bpe_new(len(pieces), b"".join(blobs), offsets.ctypes.data, scores.ctypes.data, types.ctypes.data,
                         c_bytes.ctypes.data, int(bool(spec["add_dummy_prefix"])),
                         int(bool(spec["remove_extra_whitespaces"])), ctypes.byref(bad))
    if not handle:
        return None, (f"piece {pieces[bad.value]['piece']!r} holds a character that is no piece" if bad.value >= 0
                      else "out of memory")
    return FastEncoder(lib, handle, sp), None


if __name__ == "__main__":
    parser = arg_parser("export a sentencepiece .model to run.c's tokenizer .bin")
    parser.add_argument("-t", "--tokenizer-model", type=str, help="optional path to custom tokenizer")
    args = parser.parse_args()
    try:
        path = Tokenizer(args.tokenizer_model).export()
    except (OSError, ValueError) as e:
        die(e)
    print(f"wrote {path}")
