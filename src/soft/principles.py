"""Principle-driven prompts: principles, ICL exemplars and the text the model continues.

Layout of one prompt (the principles come first so that a shared-prefix cache can reuse
them; the exemplars sampled for this prompt follow; the new user turn is last):

    <intro>

    1 (ethical). The assistant should ...
    ...

    ---
    User: <exemplar user turn>

    Assistant (internal thoughts): <self_id> <which rules apply>

    Assistant: <exemplar answer>

    ---
    User: <new prompt>

    Assistant (internal thoughts):

The model continues from "(internal thoughts):"; the filter keeps what follows the
answer marker.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import yaml

from soft.errors import SoftError
from soft.io import read_jsonl, yaml_problem

USER_TAG = "User:"
THOUGHTS_TAG = "Assistant (internal thoughts):"
ANSWER_TAG = "Assistant:"
SEPARATOR = "---"


@dataclass(frozen=True)
class Principles:
    self_id: str
    intro: str
    rules: tuple[tuple[int, str, str], ...]  # (number, name, text)
    system_prompt: str

    def text(self) -> str:
        lines = [self.intro.strip(), ""]
        lines += [f"{num} ({name}). {text.strip()}" for num, name, text in self.rules]
        return "\n".join(lines)


def load_principles(path: str | Path) -> Principles:
    path = Path(path)
    if not path.is_file():
        raise SoftError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise SoftError(yaml_problem(path, e)) from None
    if not isinstance(data, dict):
        raise SoftError(f"{path}: expected a mapping with self_id, intro, principles, system_prompt")
    for key in ("self_id", "intro", "system_prompt"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise SoftError(f"{path}: key '{key}' must be a non-empty string")
    items = data.get("principles")
    if not isinstance(items, list) or not items:
        raise SoftError(f"{path}: key 'principles' must be a non-empty list")
    rules = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not all(isinstance(item.get(k), t) for k, t in
                                                 (("id", int), ("name", str), ("text", str))):
            raise SoftError(f"{path}: principles[{i}] needs id (integer), name and text (strings)")
        rules.append((item["id"], item["name"], item["text"]))
    return Principles(data["self_id"].strip(), data["intro"], tuple(rules), data["system_prompt"].strip())


EXEMPLAR_FIELDS = {"id": (str, True), "turns": (list, True)}


def _check_turns(rec: dict) -> str | None:
    if not rec["turns"]:
        return "field 'turns' is empty"
    for i, turn in enumerate(rec["turns"]):
        if not isinstance(turn, dict):
            return f"turns[{i}] must be an object"
        for key in ("user", "thoughts", "answer"):
            if not isinstance(turn.get(key), str) or not turn[key].strip():
                return f"turns[{i}] needs a non-empty string '{key}'"
    return None


def load_exemplars(path: str | Path) -> list[dict]:
    return read_jsonl(path, EXEMPLAR_FIELDS, non_empty=["id"], check=_check_turns)


def sample_exemplars(pool: list[dict], shots: int, seed: int, prompt_id: str) -> list[dict]:
    """Exemplars for one prompt: a per-prompt seeded draw, so one prompt's draw never
    depends on which other prompts share its batch or round."""
    if shots > len(pool):
        raise SoftError(f"{shots} exemplars asked per prompt but the pool holds {len(pool)}")
    rng = random.Random(f"{seed}:{prompt_id}")
    return rng.sample(sorted(pool, key=lambda e: e["id"]), shots)


def format_turn(user: str, thoughts: str | None = None, answer: str | None = None) -> str:
    text = f"{USER_TAG} {user.strip()}\n\n{THOUGHTS_TAG}"
    if thoughts is not None:
        text += f" {thoughts.strip()}\n\n{ANSWER_TAG} {answer.strip()}"
    return text


def build_prompt(principles: Principles, exemplars: list[dict], user_prompt: str) -> str:
    parts = [principles.text()]
    for ex in exemplars:
        turns = "\n\n".join(format_turn(t["user"], t["thoughts"], t["answer"]) for t in ex["turns"])
        parts.append(f"{SEPARATOR}\n{turns}")
    parts.append(f"{SEPARATOR}\n{format_turn(user_prompt)}")
    return "\n\n".join(parts)


def training_messages(principles: Principles, prompt: str, response: str | None = None) -> dict:
    """Prompt-completion pair for principle engraving: the short distilled system prompt,
    no principles and no exemplars."""
    out = {"prompt": [{"role": "system", "content": principles.system_prompt},
                      {"role": "user", "content": prompt}]}
    if response is not None:
        out["completion"] = [{"role": "assistant", "content": response}]
    return out
