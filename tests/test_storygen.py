"""Tests for storygen.py: the offline sample corpus is seeded, distinct and reads like stories."""

from storygen import generate_stories


def test_generator_deterministic_distinct_and_natural():
    a = generate_stories(1000, seed=0)
    assert a == generate_stories(1000, seed=0)
    assert a != generate_stories(1000, seed=1)
    assert len(set(a)) == 1000
    for s in a:
        assert s[-1] in "。！”", s
        assert s.count("“") == s.count("”"), s
        assert "{" not in s and "}" not in s and "  " not in s, s
        assert not any("a" <= c.lower() <= "z" for c in s), s
    openings = {s[:2] for s in a}
    assert len(openings) > 30  # not every story starts with 从前
    assert sum(s.startswith("从前") for s in a) < 0.5 * len(a)
    assert sum(len(s) for s in a) / len(a) > 150
