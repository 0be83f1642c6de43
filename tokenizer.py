"""
The sentencepiece tokenizer, and its export to the flat .bin that run.c reads with -z.

    python3 tokenizer.py --tokenizer-model=data/tok5000.model    # writes data/tok5000.bin

.bin layout (see FORMATS.md): uint32 max_token_length, then per token id: float32 score,
int32 byte length n, n raw bytes. "▁" becomes a space, BOS is written as "\\n<s>\\n" and EOS as
"\\n</s>\\n"; byte-fallback pieces stay literally "<0xAB>" (run.c turns them into the raw byte).
"""

import argparse
import os
import struct
import sys

from sentencepiece import SentencePieceProcessor

TOKENIZER_MODEL = os.path.join("data", "tok5000.model")  # the Chinese 5000-piece vocabulary


class Tokenizer:
    def __init__(self, tokenizer_model=None):
        model_path = tokenizer_model if tokenizer_model else TOKENIZER_MODEL
        if not os.path.isfile(model_path):
            raise FileNotFoundError(f"tokenizer model {model_path} not found "
                                    "(run: python3 tinystories.py train_vocab --vocab_size=5000)")
        self.sp_model = SentencePieceProcessor()
        try:
            self.sp_model.Load(model_path)
        except (OSError, RuntimeError) as e:
            raise ValueError(f"{model_path} is not a sentencepiece model ({str(e).splitlines()[0]})") from None
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
        tmp = out_path + ".tmp"
        with open(tmp, "wb") as f:  # written aside and renamed, so a crash never leaves half a file
            f.write(struct.pack("<I", max_token_length))
            for b, score in zip(tokens, scores):
                f.write(struct.pack("<fi", score, len(b)))
                f.write(b)
        os.replace(tmp, out_path)
        return out_path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="export a sentencepiece .model to run.c's tokenizer .bin")
    parser.add_argument("-t", "--tokenizer-model", type=str, help="optional path to custom tokenizer")
    args = parser.parse_args()
    try:
        path = Tokenizer(args.tokenizer_model).export()
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"wrote {path}")
