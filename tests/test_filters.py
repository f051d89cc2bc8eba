"""Unit tests for soft.filter.responses on hand-written continuations."""

from __future__ import annotations

import pytest

from soft.errors import SoftError
from soft.filter.responses import (
    DROP_REASONS,
    REFUSAL_OPENINGS,
    FilterSettings,
    cut_at_repeat,
    filter_continuation,
    filter_records,
    opens_with_refusal,
    prompt_overlap,
)
from soft.generate.icl import IclSettings, build_pool

SELF_ID = "I am a helpful, honest and harmless AI assistant."
THOUGHTS = f"{SELF_ID} The user asks about basil. I should follow rules 3 (helpful)."
PROMPT = "How can I keep cut basil fresh for a few extra days?"
ANSWER = ("Put the stems in a glass of water on the counter, like cut flowers, "
          "and keep the leaves loosely covered with a plastic bag.")
S = FilterSettings(self_id=SELF_ID)

EX_A = {"id": "exA", "turns": [{
    "user": "Why is the sky blue?",
    "thoughts": f"{SELF_ID} I should follow rules 2 (informative).",
    "answer": "Sunlight scatters off tiny air molecules and blue light scatters the most of all colors.",
}]}
EX_B = {"id": "exB", "turns": [{
    "user": "How do I fix a flat tire?",
    "thoughts": f"{SELF_ID} I should follow rules 13 (step-by-step).",
    "answer": "Take the wheel off the bike and lift the tire with two levers before patching the tube.",
}]}
EXEMPLARS = {"exA": EX_A, "exB": EX_B}
# a 6-word span of EX_B's answer, in an answer that is otherwise fine
LEAKY = ("Start by checking the valve. Then take the wheel off the bike and look "
         "for glass stuck in the rubber.")


def cont(answer: str, thoughts: str = THOUGHTS) -> str:
    return f" {thoughts}\n\nAssistant: {answer}"


def run(continuation: str, prompt: str = PROMPT, shown: list[str] | None = None, settings=S):
    return filter_continuation(continuation, prompt, shown or [], settings)


def test_kept():
    r = run(cont(ANSWER))
    assert r.reason is None
    assert r.answer == ANSWER
    assert (r.cut_at_turn, r.cut_at_repeat) == (False, False)


def test_missing_self_id_dropped():
    r = run(cont(ANSWER, thoughts="The user asks about basil. I should follow rules 3 (helpful)."))
    assert r.reason == "no_self_id"
    assert r.answer is None


def test_self_id_must_open_the_thoughts():
    r = run(cont(ANSWER, thoughts=f"Well. {SELF_ID} I should follow rules 3."))
    assert r.reason == "no_self_id"


def test_require_self_id_false_accepts():
    settings = FilterSettings(self_id=SELF_ID, require_self_id=False)
    r = run(cont(ANSWER, thoughts="Some other opening."), settings=settings)
    assert r.reason is None
    assert r.answer == ANSWER


def test_no_answer_marker_dropped():
    r = run(f" {THOUGHTS} {ANSWER}")
    assert r.reason == "no_answer_marker"
    assert r.answer is None


def test_marker_must_start_a_line():
    r = run(f" {THOUGHTS} Assistant: {ANSWER}")
    assert r.reason == "no_answer_marker"


def test_no_marker_required_takes_whole_text():
    settings = FilterSettings(self_id=SELF_ID, require_self_id=False, require_answer_marker=False)
    r = run(f"  {ANSWER}  \n", settings=settings)
    assert r.reason is None
    assert r.answer == ANSWER


def test_cut_at_new_user_turn():
    r = run(cont(ANSWER + "\nUser: And what about mint?\n\nAssistant (internal thoughts): hmm"))
    assert r.reason is None
    assert r.answer == ANSWER
    assert r.cut_at_turn is True and r.cut_at_repeat is False


def test_cut_at_separator():
    r = run(cont(ANSWER + "\n---\nUser: next"))
    assert r.reason is None
    assert r.answer == ANSWER
    assert r.cut_at_turn is True


def test_cut_at_first_repeated_sentence():
    text = ("Keep the stems in fresh water. Change the water every day. "
            "Store the glass away from direct sun. KEEP the stems in fresh water!! More text follows here.")
    r = run(cont(text))
    assert r.reason is None
    assert r.answer == ("Keep the stems in fresh water. Change the water every day. "
                        "Store the glass away from direct sun.")
    assert r.cut_at_repeat is True and r.cut_at_turn is False


def test_cut_at_repeat_helper():
    assert cut_at_repeat("One. Two? one! Three.") == ("One. Two?", True)
    assert cut_at_repeat("One. Two. Three.") == ("One. Two. Three.", False)


def test_too_short():
    r = run(cont("Use water."))
    assert r.reason == "too_short"
    assert r.answer is None


def test_too_short_after_cut():
    r = run(cont("Use water.\nUser: " + "x" * 100))
    assert r.reason == "too_short"
    assert r.cut_at_turn is True


def test_min_chars_boundary():
    answer = "a" * 39 + "."  # 40 characters
    assert run(cont(answer)).reason is None
    assert run(cont(answer[1:])).reason == "too_short"


def test_copies_prompt():
    assert prompt_overlap(PROMPT, PROMPT) == 1.0
    r = run(cont(PROMPT))
    assert r.reason == "copies_prompt"
    assert r.answer is None


def test_overlap_threshold_setting():
    settings = FilterSettings(self_id=SELF_ID, max_prompt_overlap=1.0)
    assert run(cont(PROMPT), settings=settings).reason is None


def test_exemplar_leak_from_shown_exemplar():
    shown = [EX_B["turns"][0][k] for k in ("user", "thoughts", "answer")]
    r = run(cont(LEAKY), shown=shown)
    assert r.reason == "exemplar_leak"


def test_span_from_exemplar_not_shown_is_kept():
    shown = [EX_A["turns"][0][k] for k in ("user", "thoughts", "answer")]
    r = run(cont(LEAKY), shown=shown)
    assert r.reason is None
    assert r.answer == LEAKY


def test_five_word_span_is_not_a_leak():
    shown = [EX_B["turns"][0]["answer"]]
    answer = "Start by checking the valve. Then take the wheel off and look for glass stuck in the rubber."
    assert run(cont(answer), shown=shown).reason is None  # "take the wheel off the" absent


def test_leak_ngram_zero_disables_span_check():
    settings = FilterSettings(self_id=SELF_ID, leak_ngram=0)
    assert run(cont(LEAKY), shown=[EX_B["turns"][0]["answer"]], settings=settings).reason is None


def test_format_words_leak():
    r = run(cont("Sure. I should follow rules 2 (informative). Basil keeps best in a glass of water."))
    assert r.reason == "exemplar_leak"


def test_self_id_inside_answer_is_a_leak():
    r = run(cont(f"{SELF_ID} Basil keeps best in a glass of water on the counter."))
    assert r.reason == "exemplar_leak"


# ---------------------------------------------------------------- refusal openings

REFUSE = FilterSettings(self_id=SELF_ID, drop_refusals=True)
REFUSAL = "I'm sorry, but I can't help with keeping basil fresh because it is not something I know about."


def test_refusal_kept_by_default():
    r = run(cont(REFUSAL))
    assert r.reason is None
    assert r.answer == REFUSAL


def test_refusal_dropped_when_enabled():
    r = run(cont(REFUSAL), settings=REFUSE)
    assert r.reason == "refusal"
    assert r.answer is None


@pytest.mark.parametrize("opening", REFUSAL_OPENINGS)
def test_every_documented_opening_is_a_refusal(opening):
    answer = f"{opening} help with that request, but here is what I can say about it instead."
    assert opens_with_refusal(answer)
    assert run(cont(answer), settings=REFUSE).reason == "refusal"


@pytest.mark.parametrize("answer", [
    "i cannot recommend that, but a glass of water on the counter keeps basil fresh for days.",
    "AS AN AI assistant I have no kitchen, but basil keeps best in a glass of water.",
    "I’m sorry to say this, but basil does not like the fridge at all, so keep it out.",  # curly apostrophe
    '  "I am unable to taste basil," but I know it keeps best in a glass of water.',
])
def test_refusal_opening_case_apostrophe_and_quotes(answer):
    assert opens_with_refusal(answer)
    assert run(cont(answer), settings=REFUSE).reason == "refusal"


@pytest.mark.parametrize("answer", [
    ANSWER,
    "Basil is delicate. I'm sorry to say the fridge turns it black, so keep it in water instead.",
    "Sorry to hear your basil wilts! Put the stems in a glass of water on the counter.",
    "I can help: put the stems in a glass of water on the counter, like cut flowers.",
    "Icannot is not a word, but a glass of water on the counter keeps basil fresh for days.",
])
def test_not_a_refusal_opening(answer):
    assert not opens_with_refusal(answer)
    assert run(cont(answer), settings=REFUSE).reason is None


def test_short_refusal_counts_as_too_short_first():
    assert run(cont("I cannot."), settings=REFUSE).reason == "too_short"


def test_thoughts_returned_with_answer():
    r = run(cont(ANSWER))
    assert r.thoughts == THOUGHTS
    no_marker = FilterSettings(self_id=SELF_ID, require_self_id=False, require_answer_marker=False)
    assert run(f"  {ANSWER}  ", settings=no_marker).thoughts is None
    # an answer marker with nothing before it: no thoughts either
    assert run(f"\nAssistant: {ANSWER}", settings=no_marker).thoughts is None


# ---------------------------------------------------------------- filter_records


def _gen(i: int, continuation: str, exemplar_ids: list[str], prompt: str = PROMPT, pool: dict = EXEMPLARS) -> dict:
    """A generation record as generate_responses writes it: the exemplars shown, by id and text."""
    return {"id": f"g{i}", "prompt": prompt, "round": 2, "seed": 5, "exemplar_ids": exemplar_ids,
            "exemplars": [{"id": e, "turns": pool[e]["turns"]} for e in exemplar_ids], "continuation": continuation}


def test_filter_records_stats_and_records():
    gens = [
        _gen(0, cont(ANSWER), ["exA"]),  # kept
        _gen(1, cont(ANSWER + "\nUser: more"), ["exA"]),  # kept, cut at turn
        _gen(2, cont(LEAKY), ["exA"]),  # kept: span only in exB, not shown
        _gen(3, cont(ANSWER, thoughts="No self id here."), ["exA"]),  # no_self_id
        _gen(4, f" {THOUGHTS} no marker at all, long enough to pass the length check.", []),  # no_answer_marker
        _gen(5, f" {THOUGHTS}\nAssistant: tiny", []),  # marker found, answer too_short
        _gen(6, cont(PROMPT), ["exB"]),  # copies_prompt
        _gen(7, cont(LEAKY), ["exA", "exB"]),  # exemplar_leak
        _gen(8, cont("I should follow rules 2 (informative) and give a careful long answer."), []),  # leak
        _gen(9, cont("Water it. Water it. " + "x" * 5), []),  # cut at repeat, then too_short
    ]
    kept, stats = filter_records(gens, S)
    assert [r["id"] for r in kept] == ["g0", "g1", "g2"]
    assert kept[0] == {"id": "g0", "prompt": PROMPT, "response": ANSWER, "round": 2, "seed": 5,
                       "exemplar_ids": ["exA"], "thoughts": THOUGHTS}
    assert kept[1]["response"] == ANSWER
    assert stats["dropped"] == {"no_self_id": 1, "no_answer_marker": 1, "too_short": 2, "refusal": 0,
                                "copies_prompt": 1, "exemplar_leak": 2}
    assert list(stats["dropped"]) == list(DROP_REASONS)
    assert stats["total"] == 10
    assert stats["kept"] == 3
    assert stats["total"] == stats["kept"] + sum(stats["dropped"].values())
    assert stats["cut"] == {"at_turn": 1, "at_repeat": 1}


def test_filter_records_empty_input_reports_zeros():
    kept, stats = filter_records([], S)
    assert kept == []
    assert stats == {"total": 0, "kept": 0, "dropped": {r: 0 for r in DROP_REASONS},
                     "cut": {"at_turn": 0, "at_repeat": 0}}


def test_generation_records_must_show_the_exemplars_they_name(tmp_path):
    """The filter trusts the record's `exemplars`: a record whose shown exemplars are not
    those of its `exemplar_ids` (or lack their text) is refused at read, naming file:line."""

    from soft.records import read_generations

    good = _gen(0, cont(ANSWER), ["exA", "exB"])
    other = {**good, "id": "g1"}
    cases = {"mismatch": {**other, "exemplar_ids": ["exB", "exA"]},
             "no text": {**other, "exemplars": [{"id": "exA"}, {"id": "exB", "turns": EX_B["turns"]}]},
             "missing": {k: v for k, v in other.items() if k != "exemplars"}}
    assert read_generations(_write(tmp_path / "good.jsonl", [good])) == [good]
    for name, rec in cases.items():
        path = _write(tmp_path / f"{name.replace(' ', '_')}.jsonl", [good, rec])
        with pytest.raises(SoftError, match=rf"{path.name}: line 2: .*'exemplars'"):
            read_generations(path)


def _write(path, records):
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_settings_from_config_dict():
    cfg = {"require_self_id": False, "require_answer_marker": True, "min_chars": 5,
           "max_prompt_overlap": 0.5, "leak_ngram": 3}
    s = FilterSettings.from_config(cfg, SELF_ID)
    assert s == FilterSettings(self_id=SELF_ID, require_self_id=False, min_chars=5,
                               max_prompt_overlap=0.5, leak_ngram=3)
    assert s.drop_refusals is False  # off unless asked
    assert FilterSettings.from_config({**cfg, "drop_refusals": True}, SELF_ID).drop_refusals is True
    with pytest.raises(TypeError):
        FilterSettings.from_config({**cfg, "unknown": 1}, SELF_ID)


def test_filter_records_refusal_counted_as_own_reason():
    gens = [_gen(0, cont(REFUSAL), []), _gen(1, cont(ANSWER), []), _gen(2, cont("I cannot."), [])]
    kept, stats = filter_records(gens, REFUSE)
    assert [r["id"] for r in kept] == ["g1"]
    assert stats["dropped"] == {"no_self_id": 0, "no_answer_marker": 0, "too_short": 1, "refusal": 1,
                                "copies_prompt": 0, "exemplar_leak": 0}
    kept, stats = filter_records(gens[:2], S)  # off: the refusal is kept
    assert [r["id"] for r in kept] == ["g0", "g1"]
    assert stats["dropped"]["refusal"] == 0


def test_no_thoughts_field_without_marker():
    settings = FilterSettings(self_id=SELF_ID, require_self_id=False, require_answer_marker=False)
    kept, _ = filter_records([_gen(0, f" {ANSWER}", [])], settings)
    assert kept == [{"id": "g0", "prompt": PROMPT, "response": ANSWER, "round": 2, "seed": 5,
                     "exemplar_ids": []}]


def test_leak_from_grown_exemplar_shown():
    """A growing pool's exemplars (earlier accepted answers) feed the leak check too."""
    earlier = [{"id": "p7", "prompt": "How do I fix a puncture?", "response": EX_B["turns"][0]["answer"],
                "round": 1, "seed": 5, "exemplar_ids": [], "thoughts": THOUGHTS}]
    pool = build_pool(list(EXEMPLARS.values()), IclSettings(mode="growing", shots=1), 5, [(1, earlier)], SELF_ID)
    by_id = {e["id"]: e for e in pool}
    kept, stats = filter_records([_gen(0, cont(LEAKY), ["r1:p7"], pool=by_id), _gen(1, cont(LEAKY), ["exA"])], S)
    assert [r["id"] for r in kept] == ["g1"]
    assert stats["dropped"]["exemplar_leak"] == 1
