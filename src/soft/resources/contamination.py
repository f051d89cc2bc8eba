"""Overlap between the project's own text files and the benchmark questions.

The prompt pool, the validation set, the probe prompts and the exemplars must not carry
benchmark questions: a model trained (or selected, or probed) on them would score well on
HHH or TruthfulQA for the wrong reason. Text is compared as words (lower-cased,
punctuation dropped). A text overlaps a question when they share a run of `n` words, or,
for a question shorter than `n` words (but of at least `min_words`), when the whole
question appears in the text as a run of words ("Why is the sky blue?" inside "Why is the
sky blue during the day?").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from soft.resources.eval_tasks import read_task_jsonl

NGRAM = 8
MIN_QUESTION_WORDS = 4
_NON_WORD = re.compile(r"[^\w\s]")


def words(text: str) -> tuple[str, ...]:
    return tuple(_NON_WORD.sub(" ", text.lower()).split())


def ngrams(seq: tuple[str, ...], n: int) -> Iterator[tuple[str, ...]]:
    return (seq[i:i + n] for i in range(len(seq) - n + 1))


@dataclass(frozen=True)
class Overlap:
    file: str
    record_id: str
    field: str
    question_id: str
    shared: str

    def __str__(self) -> str:
        return f"{self.file} {self.record_id} {self.field}: {self.shared!r} (benchmark {self.question_id})"


class QuestionIndex:
    """The benchmark questions' n-grams, and the short questions as whole word runs."""

    def __init__(self, questions: Iterable[tuple[str, str]], n: int = NGRAM, min_words: int = MIN_QUESTION_WORDS):
        self.n = n
        self.long: dict[tuple[str, ...], str] = {}
        self.short: dict[tuple[str, ...], str] = {}
        for qid, text in questions:
            seq = words(text)
            if len(seq) >= n:
                for gram in ngrams(seq, n):
                    self.long.setdefault(gram, qid)
            elif len(seq) >= min_words:
                self.short.setdefault(seq, qid)
        self.short_lengths = sorted({len(s) for s in self.short})

    def find(self, text: str) -> tuple[str, str] | None:
        """(question id, shared words) of the first overlap in `text`, or None."""
        seq = words(text)
        for gram in ngrams(seq, self.n):
            if gram in self.long:
                return self.long[gram], " ".join(gram)
        for length in self.short_lengths:
            for gram in ngrams(seq, length):
                if gram in self.short:
                    return self.short[gram], " ".join(gram)
        return None


# soft_hhh_ab re-renders soft_hhh's items with both answers inside its question (A/B):
# its questions are soft_hhh's plus the answers, and an answer is not a question.
RERENDERED_TASKS = ("soft_hhh_ab",)


def benchmark_questions(benchmark_dir: str | Path) -> list[tuple[str, str]]:
    """(id, question) of every record of the converted benchmark JSONL files (the A/B
    re-rendering of HHH excepted: its items are soft_hhh's)."""
    return [(r["id"], r["question"]) for path in sorted(Path(benchmark_dir).glob("*.jsonl"))
            if not path.stem.startswith(RERENDERED_TASKS) for r in read_task_jsonl(path)]


def record_texts(record: dict) -> Iterator[tuple[str, str]]:
    """(field, text) of a prompt / validation / probe / exemplar record."""
    for key in ("prompt", "chosen", "rejected"):
        if isinstance(record.get(key), str):
            yield key, record[key]
    for i, turn in enumerate(record.get("turns") or []):
        for key in ("user", "thoughts", "answer"):
            if isinstance(turn.get(key), str):
                yield f"turns[{i}].{key}", turn[key]


def overlaps(path: str | Path, index: QuestionIndex, label: str | None = None) -> list[Overlap]:
    found = []
    # the files' own readers (soft.records, soft.principles) check their fields; any
    # string field of these shapes is compared here
    records = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    for record in records:
        for field, text in record_texts(record):
            hit = index.find(text)
            if hit:
                found.append(Overlap(label or str(path), str(record.get("id")), field, *hit))
    return found
