"""Topic-guided red-teaming self-instruct (Dromedary's TGRT, in small): the base model writes
the prompt pool that the rounds then split.

1. Question types, each with one seed question (config/question_types.yaml).
2. Per type, the model brainstorms topics ("Write topics for questions of this type").
3. Per (type, topic), the model writes questions, shown the type's seed as an example.
4. Filters: length in words, banned words (things a text-only assistant cannot see or
   open), and near-duplicates: a question whose ROUGE-L F1 against any kept question (or
   any seed) is above `max_rouge_l` is dropped (Google's rouge-score library).

Every step is seeded; the pool is written in a fixed order with ids
"si-<type>-<topic>-<n>", so the same config and seed give the same file.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from soft.errors import SoftError
from soft.io import yaml_problem

log = logging.getLogger(__name__)

# Lines the model writes end at a newline; nothing after it belongs to the item.
LINE_STOP = ["\n"]
_NUMBERING = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s*")


@dataclass(frozen=True)
class QuestionType:
    name: str
    description: str
    seed: str


@dataclass(frozen=True)
class SelfInstructSettings:
    question_types: str = "config/question_types.yaml"
    topics_per_type: int = 3
    questions_per_topic: int = 2
    max_rouge_l: float = 0.7
    min_words: int = 4
    max_words: int = 60
    banned_words: tuple[str, ...] = ("image", "picture", "photo", "graph", "chart", "video", "file",
                                     "link", "url", "attached", "audio")
    max_new_tokens: int = 48
    temperature: float = 0.9
    top_p: float = 0.95
    batch_size: int = 8

    @classmethod
    def from_config(cls, cfg: dict) -> "SelfInstructSettings":
        known = {k: v for k, v in cfg.items() if k != "source"}
        if "banned_words" in known:
            known["banned_words"] = tuple(known["banned_words"])
        return cls(**known)

    @property
    def max_pool(self) -> int:
        """Most prompts one question type can add (before deduplication)."""
        return self.topics_per_type * self.questions_per_topic


def load_question_types(path: str | Path) -> list[QuestionType]:
    path = Path(path)
    if not path.is_file():
        raise SoftError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise SoftError(yaml_problem(path, e)) from None
    types = data.get("types") if isinstance(data, dict) else None
    if not isinstance(types, list) or not types:
        raise SoftError(f"{path}: expected a non-empty list under 'types'")
    out, seen = [], set()
    for i, t in enumerate(types):
        where = f"{path}: types[{i}]"
        if not isinstance(t, dict):
            raise SoftError(f"{where}: expected a mapping with name, description, seed")
        for key in ("name", "description", "seed"):
            if not isinstance(t.get(key), str) or not t[key].strip():
                raise SoftError(f"{where}: '{key}' must be a non-empty string")
        if t["name"] in seen:
            raise SoftError(f"{where}: duplicate name '{t['name']}'")
        seen.add(t["name"])
        out.append(QuestionType(t["name"].strip(), t["description"].strip(), t["seed"].strip()))
    return out


def count_types(path: str | Path) -> int:
    return len(load_question_types(path))


def topic_prompt(qtype: QuestionType, n: int) -> str:
    return (f"Below are {n} short, varied topics for questions of this type: {qtype.description}\n"
            f"Example question of this type: {qtype.seed}\n\nTopics:\n1.")


def question_prompt(qtype: QuestionType, topic: str) -> str:
    return (f"Write one question that a user might ask an AI assistant.\n"
            f"Type of question: {qtype.description}\nExample: {qtype.seed}\n"
            f"Topic: {topic}\nQuestion:")


def clean_line(text: str) -> str:
    """The first line of a continuation, without list numbering, bullets or quotes."""
    line = text.strip().split("\n", 1)[0] if text.strip() else ""
    return _NUMBERING.sub("", line).strip().strip('"').strip()


def parse_topic(text: str, max_words: int = 8) -> str | None:
    topic = clean_line(text).rstrip(".")
    if not topic or len(topic.split()) > max_words:
        return None
    return topic


def question_problem(question: str, settings: SelfInstructSettings) -> str | None:
    """Why a written question is dropped (None = keep): too_short, too_long, banned_word."""
    words = question.split()
    if len(words) < settings.min_words:
        return "too_short"
    if len(words) > settings.max_words:
        return "too_long"
    lowered = {w.strip(".,;:!?\"'()").lower() for w in words}
    if any(b.lower() in lowered for b in settings.banned_words):
        return "banned_word"
    return None


class NearDuplicateFilter:
    """Keeps a question only if its ROUGE-L F1 with every kept one is at most `threshold`."""

    def __init__(self, threshold: float, initial: list[str] = ()):
        from rouge_score import rouge_scorer

        self.threshold = threshold
        self.scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
        self.kept: list[str] = list(initial)

    def max_similarity(self, text: str) -> float:
        return max((self.scorer.score(k, text)["rougeL"].fmeasure for k in self.kept), default=0.0)

    def add(self, text: str) -> bool:
        if self.max_similarity(text) > self.threshold:
            return False
        self.kept.append(text)
        return True


def write_pool(model_dir: str, qtypes: list[QuestionType], settings: SelfInstructSettings,
               seed: int) -> tuple[list[dict], dict]:
    """The generated prompt pool (records: id, prompt, category) and counts per step."""
    from soft.generate.decoding import GenerationSettings
    from soft.generate.responses import generate_hf
    from soft.models import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    model = load_causal_lm(model_dir)
    model.eval()
    gen = GenerationSettings(backend="hf", max_new_tokens=settings.max_new_tokens,
                             temperature=settings.temperature, top_p=settings.top_p,
                             batch_size=settings.batch_size, max_prompt_tokens=1024)

    # Topics: one sample per wanted topic, each a separate continuation of "1.".
    topic_texts = [topic_prompt(t, settings.topics_per_type) for t in qtypes for _ in range(settings.topics_per_type)]
    raw_topics = generate_hf(model, tokenizer, topic_texts, gen, seed, reuse_prefix=False, stop_strings=LINE_STOP)
    topics: dict[int, list[str]] = {i: [] for i in range(len(qtypes))}
    for n, text in enumerate(raw_topics):
        i = n // settings.topics_per_type
        topic = parse_topic(text)
        if topic and topic.lower() not in {x.lower() for x in topics[i]}:
            topics[i].append(topic)
    log.info("topics: %d usable of %d written", sum(map(len, topics.values())), len(raw_topics))

    jobs = [(i, j, q) for i, ts in topics.items() for j, topic in enumerate(ts)
            for q in range(settings.questions_per_topic)]
    texts = [question_prompt(qtypes[i], topics[i][j]) for i, j, _ in jobs]
    raw_questions = generate_hf(model, tokenizer, texts, gen, seed + 1, reuse_prefix=False,
                                stop_strings=LINE_STOP)
    dedup = NearDuplicateFilter(settings.max_rouge_l, [t.seed for t in qtypes])
    counts = {"types": len(qtypes), "topics_written": len(raw_topics),
              "topics_kept": sum(map(len, topics.values())), "questions_written": len(jobs),
              "dropped": {"empty": 0, "too_short": 0, "too_long": 0, "banned_word": 0, "near_duplicate": 0}}
    pool = []
    for (i, j, q), text in zip(jobs, raw_questions):
        question = clean_line(text)
        problem = "empty" if not question else question_problem(question, settings)
        if problem is None and not dedup.add(question):
            problem = "near_duplicate"
        if problem:
            counts["dropped"][problem] += 1
            continue
        pool.append({"id": f"si-{i:02d}-{j:02d}-{q}", "prompt": question, "category": qtypes[i].name,
                     "topic": topics[i][j]})
    counts["kept"] = len(pool)
    log.info("self-instruct pool: %d questions kept of %d (%s)", len(pool), len(jobs), counts["dropped"])
    if not pool:
        raise SoftError(f"self-instruct kept none of {len(jobs)} questions ({counts['dropped']}); "
                        f"loosen prompts.min_words / max_words / banned_words / max_rouge_l")
    return pool, counts
