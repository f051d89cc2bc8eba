"""Precision is decided in the job from what the hardware reports (soft.precision)."""

import pytest

from soft.errors import SoftError
from soft.precision import cpu_flags, decide

AMX = frozenset({"fpu", "avx512f", "amx_bf16", "amx_tile", "avx512_bf16"})
ZEN = frozenset({"fpu", "avx512f", "avx512_bf16"})
OLD = frozenset({"fpu", "avx2", "fma"})


@pytest.mark.parametrize("flags,used", [(AMX, "bf16"), (ZEN, "bf16"), (OLD, "fp32"), (frozenset(), "fp32")])
def test_auto_follows_the_cpu_flags(flags, used):
    p = decide("auto", "cpu", flags=flags)
    assert p.used == used
    assert ("reports none" in p.reason) == (used == "fp32")


def test_explicit_choices_win_over_the_hardware():
    assert decide("fp32", "cpu", flags=AMX).used == "fp32"
    assert decide("bf16", "cpu", flags=OLD).used == "bf16"
    assert decide("auto", "cuda", cuda_bf16=True).used == "bf16"
    assert decide("auto", "cuda", cuda_bf16=False).used == "fp32"
    with pytest.raises(SoftError, match="does not support it"):
        decide("bf16", "cuda", cuda_bf16=False, key="train.precision")


def test_wrong_value_names_the_key():
    with pytest.raises(SoftError, match=r"config key 'evaluation.precision': 'fp16' is not one of auto, fp32, bf16"):
        decide("fp16", "cpu", key="evaluation.precision")


def test_cpu_flags_reads_the_first_processor(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nflags\t\t: fpu avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags.__wrapped__(str(f)) == frozenset({"fpu", "avx512_bf16"})
    assert cpu_flags.__wrapped__(str(tmp_path / "missing")) == frozenset()


def test_precision_check_counts_flips_and_log_likelihood_moves():
    """soft.evaluate.precision_check's comparison of an fp32 and a bf16 pass, on made-up documents:
    one of four HHH documents flips, the log-likelihood differences are over every choice."""
    from soft.evaluate.precision_check import compare_documents

    def doc(lls, acc):
        return {"lls": lls, "acc": acc, "acc_norm": acc}

    fp32 = {("soft_hhh", i): doc([-1.0, -2.0], 1.0) for i in range(4)}
    bf16 = dict(fp32)
    bf16[("soft_hhh", 2)] = doc([-2.5, -2.25], 0.0)
    rows = compare_documents(fp32, bf16)
    row = rows["soft_hhh"]
    assert (row["documents"], row["choices"]) == (4, 8)
    assert row["max_abs_ll_diff"] == pytest.approx(1.5)
    assert row["mean_abs_ll_diff"] == pytest.approx((1.5 + 0.25) / 8, abs=1e-4)
    assert row["acc"]["fp32"] == 1.0 and row["acc"]["bf16"] == 0.75 and row["acc"]["flipped"] == 1
    assert row["acc"]["test"] == "mcnemar_exact" and row["acc"]["diff_ci95"][0] < 0 <= row["acc"]["diff_ci95"][1]
    with pytest.raises(SoftError, match="different documents"):
        compare_documents(fp32, {k: v for k, v in bf16.items() if k[1] != 3})
