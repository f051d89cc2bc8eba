"""soft.stats: paired comparisons on hand-checkable cases, sample files, determinism."""

from __future__ import annotations

import json
import math

import pytest

from soft.errors import SoftError
from soft.stats import (HEADLINE_METRICS, SECOND_VIEW_METRICS, both_orders_outcomes, TEST_MCNEMAR, TEST_SEEDS, TEST_WILCOXON, Headline, compare, format_diff,
                        mcnemar_p, outcomes, paired_bootstrap_ci, paired_test, read_samples, seed_interval)


def write_samples(path, rows):
    """rows: (task, doc_id, metrics) in any order; written sorted like lm-eval's files."""
    path.write_text("".join(json.dumps({"task": t, "doc_id": d, "metrics": m}) + "\n"
                            for t, d, m in sorted(rows, key=lambda r: (r[0], r[1]))))
    return path


# ------------------------------------------------------------------ McNemar

def test_mcnemar_all_discordant_pairs_one_way():
    # 6 documents flipped 0 -> 1, none the other way: two-sided binomial p = 2 * 0.5**6
    cand = [1] * 6 + [1, 0]
    ref = [0] * 6 + [1, 0]
    assert mcnemar_p(cand, ref) == pytest.approx(2 * 0.5 ** 6)


def test_mcnemar_balanced_flips_is_one():
    # 3 up, 3 down: no evidence either way
    assert mcnemar_p([1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]) == pytest.approx(1.0)


def test_mcnemar_no_discordant_pairs():
    assert mcnemar_p([1, 0, 1], [1, 0, 1]) == 1.0


def test_mcnemar_counts_only_discordant_pairs():
    # adding agreeing documents changes neither p nor the test; 5 up 1 down: p = 2 * 7/64
    base_c, base_r = [1] * 5 + [0], [0] * 5 + [1]
    p = mcnemar_p(base_c, base_r)
    assert p == pytest.approx(2 * (1 + 6) / 2 ** 6)
    assert mcnemar_p(base_c + [1] * 20 + [0] * 20, base_r + [1] * 20 + [0] * 20) == pytest.approx(p)


# ------------------------------------------------------------------ paired test

def test_paired_test_binary_numbers():
    cand = {("t", i): v for i, v in enumerate([1, 1, 1, 1, 1, 1, 1, 0])}
    ref = {("t", i): v for i, v in enumerate([0, 0, 0, 0, 0, 0, 1, 0])}
    row = paired_test(cand, ref)
    assert row["test"] == TEST_MCNEMAR
    assert row["n"] == 8
    assert row["diff"] == pytest.approx(6 / 8)
    assert row["p_value"] == pytest.approx(2 * 0.5 ** 6)
    # the CI holds the difference and stays inside the possible range [-1, 1]
    assert -1 <= row["ci_low"] <= row["diff"] <= row["ci_high"] <= 1
    assert row["ci_low"] > 0  # six of eight flipped up, none down


def test_paired_test_equal_models_has_zero_width_ci():
    cand = {("t", i): i % 2 for i in range(10)}
    row = paired_test(cand, dict(cand))
    assert (row["diff"], row["ci_low"], row["ci_high"], row["p_value"]) == (0.0, 0.0, 0.0, 1.0)


def test_paired_ci_is_narrower_than_unpaired_noise():
    # both models get the same 40 documents right or wrong except 2 flipped up: the
    # paired CI holds +0.05 and never goes below 0 (no document flipped down), and is far
    # narrower than the +-0.22 that two independent 40-document means at 0.5 would give
    ref = [i % 2 for i in range(40)]
    cand = list(ref)
    cand[0], cand[2] = 1, 1
    low, high = paired_bootstrap_ci(cand, ref)
    assert 0 <= low <= 0.05 <= high <= 0.2


def test_bootstrap_is_seeded():
    # continuous outcomes, so that two seeds' resamples give different interval ends
    cand = [0.1 * i + 0.013 * i * i for i in range(12)]
    ref = [0.11 * i for i in range(12)]
    assert paired_bootstrap_ci(cand, ref) == paired_bootstrap_ci(cand, ref)
    assert paired_bootstrap_ci(cand, ref, seed=1) != paired_bootstrap_ci(cand, ref, seed=2)


def test_paired_test_continuous_uses_wilcoxon():
    # every difference positive: exact signed-rank p for n = 6 is 2 / 2**6
    cand = {("m", i): 0.5 + 0.01 * (i + 1) for i in range(6)}
    ref = {("m", i): 0.5 for i in range(6)}
    row = paired_test(cand, ref)
    assert row["test"] == TEST_WILCOXON
    assert row["diff"] == pytest.approx(0.035)
    assert row["p_value"] == pytest.approx(2 / 2 ** 6)
    assert row["ci_low"] > 0


def test_paired_test_pairs_by_key_not_by_order():
    cand = {("t", 0): 1, ("t", 1): 0, ("t", 2): 1}
    ref = {("t", 2): 1, ("t", 0): 0, ("t", 1): 0}
    assert paired_test(cand, ref)["diff"] == pytest.approx(1 / 3)


def test_paired_test_different_documents_is_an_error():
    with pytest.raises(SoftError, match="different documents"):
        paired_test({("t", 0): 1, ("t", 1): 0}, {("t", 0): 1, ("t", 2): 0})


def test_paired_test_binary_demanded_on_continuous_values():
    with pytest.raises(SoftError, match="0/1"):
        paired_test({("t", 0): 0.3}, {("t", 0): 0.0}, binary=True)


# ------------------------------------------------------------------ seeds

def test_seed_interval_is_the_t_interval():
    # mean 0.2, sd 0.1, n 3: 0.2 +- t(0.975, 2) * 0.1 / sqrt(3), t = 4.302653
    row = seed_interval([0.1, 0.2, 0.3])
    half = 4.302653 * 0.1 / math.sqrt(3)
    assert row["test"] == TEST_SEEDS and row["n"] == 3
    assert row["diff"] == pytest.approx(0.2)
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(0.2 - half, abs=1e-6), pytest.approx(0.2 + half, abs=1e-6))


def test_seed_interval_one_seed_has_no_interval():
    row = seed_interval([0.05])
    assert row["diff"] == 0.05 and math.isnan(row["ci_low"]) and math.isnan(row["p_value"])


# ------------------------------------------------------------------ samples files and comparisons

def test_read_samples_and_pool_a_group(tmp_path):
    path = write_samples(tmp_path / "s.jsonl", [
        ("soft_hhh_ab_harmless", 0, {"acc": 1, "acc_norm": 0, "margin": 2.0}),
        ("soft_hhh_ab_harmless", 1, {"acc": 0, "acc_norm": 0, "margin": -0.5}),
        ("soft_hhh_ab_helpful", 0, {"acc": 0, "acc_norm": 1, "margin": -1.0}),
        ("soft_hhh_ab_helpful", 1, {"acc": 1, "acc_norm": 1, "margin": 0.25}),
        ("soft_truthfulqa_mc1", 3, {"acc": 1, "acc_norm": 1}),
    ])
    samples = read_samples(path)
    hhh = next(h for h in HEADLINE_METRICS if h.task == "soft_hhh_ab")
    assert hhh.metric == "acc_both_orders"
    # the group's number pools its subtasks' items (documents 2i, 2i+1 = item i in both
    # orders); the same item index in two subtasks is two items
    assert outcomes(samples, hhh) == {("soft_hhh_ab_harmless", 0): 1.0, ("soft_hhh_ab_helpful", 0): 0.0}
    per_order = next(h for h in SECOND_VIEW_METRICS if h.task == "soft_hhh_ab")
    assert outcomes(samples, per_order) == {("soft_hhh_ab_harmless", 0): 1.0, ("soft_hhh_ab_harmless", 1): 0.0,
                                            ("soft_hhh_ab_helpful", 0): 0.0, ("soft_hhh_ab_helpful", 1): 1.0}


def test_both_orders_cancels_a_letter_preference():
    """A model that prefers the letter A by 3 nats whatever the answers, plus a small
    content signal c_i: per order it is right exactly half the time, whatever c_i; summed
    over both orders the preference cancels and the content decides."""
    content = [0.4, -0.2, 0.1, 0.3, -0.6, 0.2]  # > 0: the model leans to the preferred answer
    margins = {}
    for i, c in enumerate(content):
        preferred_first = i % 2 == 0  # the record's own order puts the preferred answer at A or B
        for order in (0, 1):  # doc 2i: the record's order; doc 2i+1: swapped
            preferred_is_a = preferred_first != bool(order)
            margins[2 * i + order] = (3.0 if preferred_is_a else -3.0) + c
    per_order = [int(m > 0) for m in margins.values()]
    assert sum(per_order) / len(per_order) == 0.5
    items = both_orders_outcomes(margins)
    assert items == {i: float(c > 0) for i, c in enumerate(content)}
    # an odd limit leaves the last item with one order: it is left out, not half-counted
    del margins[11]
    assert sorted(both_orders_outcomes(margins)) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("line, problem", [
    ('{"task": "t", "doc_id": "0", "metrics": {"acc": 1}}', "doc_id"),
    ('{"task": "t", "doc_id": 0, "metrics": {"acc": "yes"}}', "finite number"),
    ('{"task": "t", "doc_id": 0}', "metrics"),
    ("not json", "not valid JSON"),
])
def test_read_samples_names_file_and_line(tmp_path, line, problem):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"task": "t", "doc_id": 9, "metrics": {"acc": 1}}\n' + line + "\n")
    with pytest.raises(SoftError, match=rf"bad.jsonl: line 2: .*{problem}"):
        read_samples(path)


def test_read_samples_duplicate_document(tmp_path):
    path = tmp_path / "dup.jsonl"
    path.write_text('{"task": "t", "doc_id": 1, "metrics": {"acc": 1}}\n' * 2)
    with pytest.raises(SoftError, match="dup.jsonl: line 2: .*twice"):
        read_samples(path)


def samples_of(values: dict[str, list]):
    return {(task, i): {"acc": float(v)} for task, vs in values.items() for i, v in enumerate(vs)}


def test_compare_pools_seeds_and_adds_the_seed_interval():
    mc1 = Headline("MC1", "mc1", "acc")
    cand = {0: samples_of({"mc1": [1, 1, 0, 0]}), 1: samples_of({"mc1": [1, 1, 1, 0]})}
    ref = {0: samples_of({"mc1": [0, 1, 0, 0]}), 1: samples_of({"mc1": [0, 1, 0, 0]})}
    pooled, seeds = compare(cand, ref, metrics=(mc1,))
    assert pooled["n"] == 8 and pooled["diff"] == pytest.approx(3 / 8) and pooled["test"] == TEST_MCNEMAR
    assert pooled["p_value"] == pytest.approx(2 * 0.5 ** 3)
    # per seed: +0.25 and +0.5
    assert seeds["n"] == 2 and seeds["diff"] == pytest.approx(0.375) and seeds["test"] == TEST_SEEDS


def test_compare_skips_benchmarks_one_side_lacks():
    cand = {0: samples_of({"soft_truthfulqa_mc1": [1, 0]})}
    ref = {0: samples_of({"soft_truthfulqa_mc1": [0, 0], "soft_truthfulqa_mc2": [0.5, 0.5]})}
    rows = compare(cand, ref)
    assert [(r["task"], r["metric"]) for r in rows] == [("soft_truthfulqa_mc1", "acc")]


def test_format_diff():
    assert format_diff({"diff": 0.04, "ci_low": -0.01, "ci_high": 0.09, "p_value": 0.123}) == \
        "+0.040 [-0.010, +0.090], p=0.12"
    assert format_diff({"diff": 0.2, "ci_low": 0.1, "ci_high": 0.3, "p_value": 0.0001}).endswith("p<0.001")
    assert format_diff({"diff": math.nan}) == "–"
