"""Dromedary-style filtering of raw continuations into training answers.

Each continuation is the model's text after "Assistant (internal thoughts):". The
filter checks the self-identification opening, extracts the answer after the answer
marker, trims it (at a new turn, at the first repeated sentence) and drops answers that
are too short, open with a refusal (optional), copy the prompt, or copy text from the
exemplars shown to that prompt. Every decision is counted by reason. Kept records also
carry the internal thoughts, which the `growing` ICL mode shows as exemplars later.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from soft.principles import ANSWER_TAG, SEPARATOR, THOUGHTS_TAG, USER_TAG
from soft.records import TURN_KEYS

# Why a continuation was dropped, in the order the checks run.
DROP_REASONS = ("no_self_id", "no_answer_marker", "too_short", "refusal", "copies_prompt", "exemplar_leak")

# Refusal openings dropped when filter.drop_refusals is on (compared case-insensitively with
# the answer's start, curly apostrophes read as straight ones). Off by default: for the
# red-team prompts of the pool a refusal is the wanted answer; turn it on to study what
# the chain learns from helpful answers alone. config/README.md lists the same openings.
REFUSAL_OPENINGS = (
    "I'm sorry", "I am sorry", "Sorry,", "I apologize", "I apologise",
    "I cannot", "I can't", "I can not", "I won't", "I will not",
    "I'm unable", "I am unable", "I'm not able", "I am not able",
    "As an AI", "As a language model", "As an assistant",
)

# A new turn or a new conversation starting inside the answer ends it.
_TURN_BREAK = re.compile(
    "|".join(re.escape("\n" + t) for t in (USER_TAG, SEPARATOR, THOUGHTS_TAG, ANSWER_TAG))
)
_ANSWER_MARKER = re.compile(r"(?:^|\n)" + re.escape(ANSWER_TAG))
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[a-z0-9']+")
# Format words, and the internal-thoughts formula, that must never reach a training answer.
_FORMAT_LEAKS = ("internal thoughts", "user:", "assistant:", "should follow rule")


@dataclass(frozen=True)
class FilterSettings:
    self_id: str
    require_self_id: bool = True
    require_answer_marker: bool = True
    min_chars: int = 40
    max_prompt_overlap: float = 0.8
    leak_ngram: int = 6
    drop_refusals: bool = False

    @classmethod
    def from_config(cls, cfg: dict, self_id: str) -> "FilterSettings":
        return cls(self_id=self_id, **cfg)


@dataclass(frozen=True)
class FilterResult:
    answer: str | None  # None when dropped
    reason: str | None  # drop reason, None when kept
    cut_at_turn: bool = False
    cut_at_repeat: bool = False
    thoughts: str | None = None  # text before the answer marker; None without a marker


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def cut_at_turn(answer: str) -> tuple[str, bool]:
    match = _TURN_BREAK.search(answer)
    return (answer[: match.start()], True) if match else (answer, False)


def cut_at_repeat(answer: str) -> tuple[str, bool]:
    """Keep sentences up to (not including) the first one that repeats an earlier one."""
    sentences = _SENTENCE_END.split(answer.strip())
    seen: set[str] = set()
    for i, sentence in enumerate(sentences):
        key = " ".join(words(sentence))
        if key and key in seen:
            return " ".join(sentences[:i]), True
        seen.add(key)
    return answer, False


def prompt_overlap(answer: str, prompt: str) -> float:
    """Jaccard overlap of the word sets: 1.0 when the answer just restates the prompt."""
    a, p = set(words(answer)), set(words(prompt))
    return len(a & p) / len(a | p) if a | p else 0.0


def opens_with_refusal(answer: str) -> bool:
    """True when the answer starts with one of REFUSAL_OPENINGS (after leading quotes,
    markdown emphasis and spaces, which small models like to open with)."""
    head = answer.lstrip(" \t\n\"'“‘*").replace("’", "'").lower()
    return any(head.startswith(opening.lower()) for opening in REFUSAL_OPENINGS)


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def leaks_exemplars(answer: str, shown_texts: list[str], n: int, self_id: str) -> bool:
    """True when the answer carries format words or copies an n-word span from the
    exemplars shown to this prompt (the leak list is built per prompt, not globally)."""
    low = answer.lower()
    if any(w in low for w in _FORMAT_LEAKS) or self_id.lower() in low:
        return True
    if n <= 0:
        return False
    answer_grams = ngrams(words(answer), n)
    return any(answer_grams & ngrams(words(text), n) for text in shown_texts)


def filter_continuation(continuation: str, prompt: str, shown_texts: list[str],
                        settings: FilterSettings) -> FilterResult:
    text = continuation.strip()
    if settings.require_self_id and not text.startswith(settings.self_id):
        return FilterResult(None, "no_self_id")
    marker = _ANSWER_MARKER.search(text)
    thoughts = None
    if marker:
        answer = text[marker.end():]
        thoughts = text[:marker.start()].strip() or None
    elif settings.require_answer_marker:
        return FilterResult(None, "no_answer_marker")
    else:
        answer = text
    answer, turn_cut = cut_at_turn(answer)
    answer, repeat_cut = cut_at_repeat(answer)
    answer = answer.strip()
    flags = dict(cut_at_turn=turn_cut, cut_at_repeat=repeat_cut)
    if len(answer) < settings.min_chars:
        return FilterResult(None, "too_short", **flags)
    if settings.drop_refusals and opens_with_refusal(answer):
        return FilterResult(None, "refusal", **flags)
    if prompt_overlap(answer, prompt) > settings.max_prompt_overlap:
        return FilterResult(None, "copies_prompt", **flags)
    if leaks_exemplars(answer, shown_texts, settings.leak_ngram, settings.self_id):
        return FilterResult(None, "exemplar_leak", **flags)
    return FilterResult(answer, None, **flags, thoughts=thoughts)


def exemplar_texts(shown: list[dict]) -> list[str]:
    """Every text of the exemplars a prompt was shown (a generation record's `exemplars`)."""
    return [t[key] for e in shown for t in e["turns"] for key in TURN_KEYS]


def filter_records(generations: list[dict], settings: FilterSettings) -> tuple[list[dict], dict]:
    """Filtered training records and the per-reason statistics. The leak check compares
    each answer with the exemplars its record says the prompt was shown (grown ones
    included), as generation wrote them."""
    kept, dropped, cuts = [], Counter({r: 0 for r in DROP_REASONS}), Counter(at_turn=0, at_repeat=0)
    for rec in generations:
        result = filter_continuation(rec["continuation"], rec["prompt"], exemplar_texts(rec["exemplars"]), settings)
        cuts["at_turn"] += result.cut_at_turn
        cuts["at_repeat"] += result.cut_at_repeat
        if result.reason:
            dropped[result.reason] += 1
            continue
        out = {
            "id": rec["id"], "prompt": rec["prompt"], "response": result.answer,
            "round": rec["round"], "seed": rec["seed"], "exemplar_ids": rec["exemplar_ids"],
        }
        if result.thoughts:
            out["thoughts"] = result.thoughts
        kept.append(out)
    stats = {"total": len(generations), "kept": len(kept), "dropped": dict(dropped), "cut": dict(cuts)}
    return kept, stats
