"""Tests for model.py: the published configs' shapes, causality, GQA, and that a tiny model learns."""

import math

import torch

from model import ModelArgs, Transformer, ffn_hidden_dim, shares_classifier, untie_classifier

# the three published Chinese tinyllamas (vocab 5000)
CONFIGS = {
    "15M": dict(dim=288, n_layers=6, n_heads=6, n_kv_heads=6, max_seq_len=256, hidden=768),
    "42M": dict(dim=512, n_layers=8, n_heads=8, n_kv_heads=8, max_seq_len=1024, hidden=1376),
    "110M": dict(dim=768, n_layers=12, n_heads=12, n_kv_heads=12, max_seq_len=1024, hidden=2048),
}


def tiny(**kw):
    args = dict(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=50, multiple_of=16, max_seq_len=24)
    args.update(kw)
    return Transformer(ModelArgs(**args))


def test_published_configs_shapes_and_param_counts():
    V = 5000
    counts = {}
    for name, c in CONFIGS.items():
        with torch.device("meta"):  # shapes only: no memory, no init cost
            m = Transformer(ModelArgs(dim=c["dim"], n_layers=c["n_layers"], n_heads=c["n_heads"],
                                      n_kv_heads=c["n_kv_heads"], vocab_size=V, multiple_of=32,
                                      max_seq_len=c["max_seq_len"]))
        d, L, h = c["dim"], c["n_layers"], c["hidden"]
        assert ffn_hidden_dim(d, 32) == h, name
        assert m.layers[0].feed_forward.w1.weight.shape == (h, d)
        assert m.layers[0].feed_forward.w2.weight.shape == (d, h)
        assert m.layers[0].attention.wk.weight.shape == (d, d)
        assert m.freqs_cos.shape == (c["max_seq_len"], d // c["n_heads"] // 2)
        assert shares_classifier(m)
        counts[name] = sum(p.numel() for p in m.parameters())  # the tied classifier counts once
        assert counts[name] == V * d + L * (4 * d * d + 3 * d * h + 2 * d) + d, name
    # the built models' counts, written out as a reader would quote them
    assert counts == {"15M": 7_415_712, "42M": 27_865_600, "110M": 88_793_856}


def test_forward_shapes_and_loss():
    torch.manual_seed(0)
    m = tiny()
    x = torch.randint(0, 50, (3, 10))
    logits = m(x, torch.randint(0, 50, (3, 10)))
    assert logits.shape == (3, 10, 50)
    # an untrained model is near uniform: loss ~ ln(vocab)
    assert abs(m.last_loss.item() - math.log(50)) < 0.5
    logits = m(x)
    assert logits.shape == (3, 1, 50) and m.last_loss is None
    torch.testing.assert_close(logits[:, 0], m(x, x)[:, -1])


def test_causality():
    torch.manual_seed(0)
    m = tiny().eval()
    x = torch.randint(0, 50, (2, 16))
    y = x.clone()
    y[:, 9:] = torch.randint(0, 50, (2, 7))  # change only the future after position 8
    lx, ly = m(x, x), m(y, y)
    torch.testing.assert_close(lx[:, :9], ly[:, :9])
    assert not torch.allclose(lx[:, 9:], ly[:, 9:])


def test_gqa_equals_mha_with_repeated_kv_heads():
    torch.manual_seed(0)
    gqa = tiny(n_heads=4, n_kv_heads=2).eval()
    mha = tiny(n_heads=4, n_kv_heads=4).eval()
    sd = gqa.state_dict()
    hs = 32 // 4
    for i in range(2):
        for w in ("wk", "wv"):
            k = sd[f"layers.{i}.attention.{w}.weight"].view(2, hs, 32)
            # kv head j serves query heads 2j and 2j+1
            sd[f"layers.{i}.attention.{w}.weight"] = k.repeat_interleave(2, dim=0).reshape(4 * hs, 32)
    mha.load_state_dict(sd)
    x = torch.randint(0, 50, (2, 12))
    torch.testing.assert_close(gqa(x, x), mha(x, x))


def test_generate_and_untie():
    torch.manual_seed(0)
    m = tiny().eval()
    idx = torch.tensor([[1, 5, 7]])
    out = m.generate(idx, 30, temperature=0.0)
    assert out.shape == (1, 33) and torch.equal(out[:, :3], idx)  # runs past max_seq_len (crops)
    out2 = m.generate(idx, 30, temperature=0.0)
    assert torch.equal(out, out2)  # greedy is deterministic
    out3 = m.generate(idx, 5, temperature=1.0, top_k=1)
    assert torch.equal(out3, out[:, :8])  # top_k=1 is greedy
    untie_classifier(m)
    assert not shares_classifier(m)
    torch.testing.assert_close(m.output.weight, m.tok_embeddings.weight)
    assert m.output.weight.data_ptr() != m.tok_embeddings.weight.data_ptr()


def test_tiny_model_loss_falls():
    # a small corpus of repeating "stories": a few dozen AdamW steps must cut the loss by far
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    stories = [torch.cat([torch.tensor([1]), torch.randint(3, 50, (15,), generator=g)]) for _ in range(4)]
    corpus = torch.cat(stories * 20)
    m = tiny(max_seq_len=32)
    opt = m.configure_optimizers(0.0, 1e-2, (0.9, 0.95), "cpu", verbose=False)
    losses = []
    for step in range(40):
        i = torch.randint(0, len(corpus) - 33, (8,), generator=g)
        batch = torch.stack([corpus[j:j + 33] for j in i])
        m(batch[:, :-1], batch[:, 1:])
        losses.append(m.last_loss.item())
        m.last_loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    assert losses[0] > 3.5
    assert sum(losses[-5:]) / 5 < 1.0, losses


def test_estimate_mfu_per_device_for_1_4_16_ranks():
    with torch.device("meta"):
        m = Transformer(ModelArgs(dim=288, n_layers=6, n_heads=6, n_kv_heads=6, vocab_size=5000,
                                  multiple_of=32, max_seq_len=256))
    N, T = 7_415_712, 256
    flops_per_seq = (6 * N + 12 * 6 * 6 * 48 * T) * T  # PaLM appendix B, per sequence of T tokens
    peak = 989e12
    # 128 x 256 tokens per micro-batch, gradient_accumulation_steps=16 in total (global) split over
    # W ranks: each GPU does 128 * 16 / W sequences per iteration. At the same per-GPU speed
    # (0.1 s for 2048 sequences) every world size must quote the same per-GPU MFU.
    mfus = []
    for world in (1, 4, 16):
        accum = 16 // world  # train.py's per-rank gradient_accumulation_steps
        dt = 0.1 * (128 * accum) / 2048
        mfu = m.estimate_mfu(128 * accum, dt, peak)  # train.py passes ONE rank's sequences
        assert math.isclose(mfu, 2048 * flops_per_seq / 0.1 / peak, rel_tol=1e-12), world
        mfus.append(mfu)
        # the global batch (the old bug) would read world times higher
        assert math.isclose(m.estimate_mfu(128 * accum * world, dt, peak), world * mfu, rel_tol=1e-12)
    assert 0 < mfus[0] < 1 and math.isclose(mfus[0], mfus[2], rel_tol=1e-12)
