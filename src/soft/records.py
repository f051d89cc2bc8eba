"""Record layouts of every JSONL file in the chain, and their validating readers.

Every record carries an `id` that survives all stages (prompt -> generation -> filtered
answer), so any answer can be traced back to its prompt, round, seed and exemplars.
"""

from __future__ import annotations

from pathlib import Path

from soft.io import FieldSpec, read_jsonl

PROMPT_FIELDS: FieldSpec = {"id": (str, True), "prompt": (str, True), "category": (str, False)}

GENERATION_FIELDS: FieldSpec = {
    **PROMPT_FIELDS,
    "round": (int, True),
    "seed": (int, True),
    "exemplar_ids": (list, True),
    # The exemplars shown, in order: {"id", "turns": [{"user", "thoughts", "answer"}]}.
    # The filter's leak check reads them.
    "exemplars": (list, True),
    "continuation": (str, True),
}

TRAINING_FIELDS: FieldSpec = {
    "id": (str, True),
    "prompt": (str, True),
    "response": (str, True),
    "round": (int, True),
    "seed": (int, True),
    "exemplar_ids": (list, True),
    # The internal thoughts before the answer marker, when the filter found the marker.
    # Not trained on; the `growing` ICL mode shows them when the answer becomes an exemplar.
    "thoughts": (str, False),
}


def _exemplar_ids_are_strings(rec: dict) -> str | None:
    if not all(isinstance(x, str) for x in rec.get("exemplar_ids", [])):
        return "field 'exemplar_ids' must be a list of strings"
    return None


TURN_KEYS = ("user", "thoughts", "answer")


def _shown_exemplars_match(rec: dict) -> str | None:
    bad = _exemplar_ids_are_strings(rec)
    if bad:
        return bad
    shown = rec.get("exemplars", [])
    for e in shown:
        if not (isinstance(e, dict) and isinstance(e.get("id"), str) and isinstance(e.get("turns"), list)
                and all(isinstance(t, dict) and all(isinstance(t.get(k), str) for k in TURN_KEYS)
                        for t in e["turns"])):
            return ("field 'exemplars' must list the exemplars shown as {\"id\": str, \"turns\": "
                    "[{\"user\", \"thoughts\", \"answer\": str}]}")
    if [e["id"] for e in shown] != rec.get("exemplar_ids"):
        return "field 'exemplars' must show the exemplars of 'exemplar_ids', in that order"
    return None


def read_prompts(path: str | Path, allow_empty: bool = False) -> list[dict]:
    return read_jsonl(path, PROMPT_FIELDS, non_empty=["id", "prompt"], allow_empty=allow_empty)


def read_generations(path: str | Path) -> list[dict]:
    return read_jsonl(path, GENERATION_FIELDS, non_empty=["id", "prompt"],
                      check=_shown_exemplars_match)


def read_training_data(path: str | Path) -> list[dict]:
    return read_jsonl(path, TRAINING_FIELDS, non_empty=["id", "prompt", "response"],
                      check=_exemplar_ids_are_strings)
