"""The early-stop rule (soft.validate.early_stop), on hand-written validation histories."""

import pytest

from soft.validate.early_stop import check_early_stop, decide, stop_record, validation_kind
from soft.errors import SoftError

SETTINGS = {"validation": "config/validation.jsonl", "metric": "margin", "patience": 1, "min_delta": 0.0}


@pytest.mark.parametrize("history,patience,min_delta,goes_on,best", [
    ([0.1], 1, 0.0, True, 0),                     # round 0 alone: nothing to decide yet
    ([0.1, 0.2], 1, 0.0, True, 1),                # improved
    ([0.1, 0.1], 1, 0.0, False, 0),               # a tie is no improvement
    ([0.1, 0.05], 1, 0.0, False, 0),              # fell
    ([0.1, 0.05], 2, 0.0, True, 0),               # one bad round, patience 2
    ([0.1, 0.05, 0.08], 2, 0.0, False, 0),        # two rounds without beating round 0
    ([0.1, 0.05, 0.12], 2, 0.0, True, 2),         # recovered in time
    ([0.1, 0.15], 1, 0.1, False, 0),              # +0.05 is below min_delta
    ([0.1, 0.25, 0.2, 0.3], 1, 0.0, True, 3),     # best moves on
])
def test_decide(history, patience, min_delta, goes_on, best):
    verdict = decide(history, patience, min_delta)
    assert verdict["continue"] is goes_on
    assert verdict["best_round"] == best


def test_stop_record_says_what_happened():
    rec = stop_record(SETTINGS, rounds=3, values=[0.5, 0.4])
    assert rec["stopped_early"] and rec["rounds_run"] == 1 and rec["stop_after_round"] == 1
    assert rec["best_round"] == 0 and rec["history"] == [{"round": 0, "value": 0.5}, {"round": 1, "value": 0.4}]
    assert "round 2 was not run" in rec["reason"]
    done = stop_record(SETTINGS, rounds=2, values=[0.5, 0.6, 0.55])
    assert not done["stopped_early"] and done["rounds_run"] == 2 and done["best_round"] == 1
    off = stop_record({"metric": "margin", "patience": 1, "min_delta": 0.0}, rounds=3, values=[])
    assert off == {"early_stop": False, "rounds_configured": 3, "rounds_run": 3, "stopped_early": False,
                   "reason": "early_stop.validation is null: every round ran"}


def test_settings_are_checked(tmp_path):
    assert validation_kind("x/val.jsonl") == "jsonl" and validation_kind("soft_truthfulqa_mc1") == "lm_eval"
    check_early_stop("k", {"metric": "margin", "patience": 1}, 3)  # off: nothing to check
    with pytest.raises(SoftError, match="'k.validation': .*nope.jsonl: file not found"):
        check_early_stop("k", {**SETTINGS, "validation": str(tmp_path / "nope.jsonl")}, 3)
    val = tmp_path / "v.jsonl"
    val.write_text("{}\n")
    with pytest.raises(SoftError, match="'k.metric': a preference JSONL gives margin or acc, not 'acc_norm'"):
        check_early_stop("k", {**SETTINGS, "validation": str(val), "metric": "acc_norm"}, 3)
