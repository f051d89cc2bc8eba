"""The resolved settings as typed, frozen dataclasses: one class per config section
(config/schema/config.schema.yaml says what each key means), and `Run`, everything the
jobs of one config receive (soft.config.resolve builds it, once).

A section is built from its resolved mapping (`from_dict`) and gives it back unchanged,
same keys in the same order (`to_dict`): Snakemake's params carry that mapping, so a
job's params, and with them its rerun trigger, are what they were before the settings
were typed. Lists become tuples and mappings read-only views, so a job cannot change a
setting another job shares.
"""

from __future__ import annotations

import typing
from dataclasses import MISSING, dataclass, field, fields
from types import MappingProxyType
from typing import Any, Literal, Mapping

from soft.errors import SoftError


def freeze(value: Any) -> Any:
    """Lists to tuples and mappings to read-only views, all the way down."""
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, Mapping) and not isinstance(value, MappingProxyType):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    return value


def thaw(value: Any) -> Any:
    """The plain lists and dicts back (a section as its to_dict())."""
    if isinstance(value, Section):
        return value.to_dict()
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    return value


@dataclass(frozen=True, kw_only=True)
class Section:
    # the resolved mapping's key order, so that to_dict gives it back as it came
    key_order: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def setting_names(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "key_order"]

    @classmethod
    def from_dict(cls, data: Mapping, where: str = ""):
        """The section from its resolved mapping; a key the class does not know, or a
        required key missing, is an error naming the key (`where`: its config path)."""
        if not isinstance(data, Mapping):
            raise SoftError(f"config key '{where}': expected a mapping, got {data!r}")
        names = cls.setting_names()
        unknown = [k for k in data if k not in names]
        if unknown:
            raise SoftError(f"config key '{where}': unknown setting(s) {', '.join(map(str, unknown))}")
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "key_order":
                continue
            key = f"{where}.{f.name}" if where else f.name
            if f.name not in data:
                if f.default is not MISSING:  # a key the resolution may leave out: None
                    continue
                raise SoftError(f"config key '{key}' is missing")
            hint = hints[f.name]
            value = data[f.name]
            if isinstance(hint, type) and issubclass(hint, Section):
                kwargs[f.name] = hint.from_dict(value, key)
            else:
                kwargs[f.name] = freeze(value)
        return cls(key_order=tuple(data), **kwargs)

    def to_dict(self) -> dict:
        """The resolved mapping this section was built from (plain lists and dicts)."""
        return {n: thaw(getattr(self, n)) for n in list(self.key_order) or self.setting_names()}


@dataclass(frozen=True, kw_only=True)
class Icl(Section):
    mode: Literal["fixed", "random", "growing"]
    shots: int
    pool_size: int | None = None


@dataclass(frozen=True, kw_only=True)
class Generation(Section):
    model: Literal["previous", "base"]
    backend: Literal["auto", "hf", "vllm"]
    dtype: Literal["auto", "bfloat16", "float16", "float32"]
    precision: Literal["auto", "fp32", "bf16"]
    max_new_tokens: int
    temperature: float
    top_p: float
    batch_size: int
    max_prompt_tokens: int


@dataclass(frozen=True, kw_only=True)
class Filter(Section):
    require_self_id: bool
    require_answer_marker: bool
    min_chars: int
    max_prompt_overlap: float
    leak_ngram: int
    drop_refusals: bool


@dataclass(frozen=True, kw_only=True)
class Curriculum(Section):
    order: Literal["none", "easy_to_hard", "hard_to_easy"]
    scope: Literal["across_rounds", "within_round"]
    scorer: Literal["base", "previous"]
    target: Literal["prompt", "prompt_response"]
    batch_size: int


@dataclass(frozen=True, kw_only=True)
class Lora(Section):
    r: int
    alpha: float
    dropout: float
    target_modules: str | tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Train(Section):
    init: Literal["previous", "base"]
    data: Literal["current", "cumulative"]
    method: Literal["lora", "full", "qlora"]
    lora: Lora
    learning_rate: float
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"]
    warmup_ratio: float
    epochs: float
    batch_size: int
    grad_accum: int
    max_length: int
    max_prompt_length: int | None = None
    max_answer_length: int | None = None
    save_steps: int
    gradient_checkpointing: bool
    precision: Literal["auto", "fp32", "bf16"]


@dataclass(frozen=True, kw_only=True)
class EarlyStop(Section):
    validation: str | None = None
    metric: str
    patience: int
    min_delta: float


@dataclass(frozen=True, kw_only=True)
class Experiment(Section):
    """One experiment instance: `defaults` <- the experiment's overrides <- its seed."""

    prompt_budget: int
    rounds: int
    icl: Icl
    generation: Generation
    filter: Filter
    curriculum: Curriculum
    train: Train
    early_stop: EarlyStop
    # an instance's (Run.experiments); Run.named_experiments, one per name, has neither
    name: str | None = None
    seed: int | None = None


@dataclass(frozen=True, kw_only=True)
class Probe(Section):
    prompts: str | None = None
    max_new_tokens: int
    max_prompts: int | None = None
    temperature: float
    top_p: float
    batch_size: int


@dataclass(frozen=True, kw_only=True)
class Judge(Section):
    kind: Literal["none", "local", "endpoint"]
    model: str | None = None
    url: str | None = None
    api_key_env: str | None = None
    reference: str | None = None
    batch_size: int


@dataclass(frozen=True, kw_only=True)
class Evaluation(Section):
    tasks: tuple[str, ...]
    raw_tasks: tuple[str, ...]
    batch_size: int
    limit: int | None = None
    model_class: Literal["hf", "cached"] | None = None  # unset: cached (soft.evaluate.harness)
    precision: Literal["auto", "fp32", "bf16"]
    probe: Probe
    judge: Judge


@dataclass(frozen=True, kw_only=True)
class Paper(Section):
    include: tuple[str, ...]
    main: tuple[str, ...] | None = None
    model_round: Literal["best", "last"]


@dataclass(frozen=True, kw_only=True)
class Storage(Section):
    keep_round_models: Literal["all", "reported"]


# Which class reads which schema node (tests/test_settings.py holds them to the schema).
SECTIONS: dict[str, type[Section]] = {
    "experiment": Experiment, "icl": Icl, "generation": Generation, "filter": Filter, "curriculum": Curriculum,
    "train": Train, "train.lora": Lora, "early_stop": EarlyStop, "evaluation": Evaluation,
    "evaluation.probe": Probe, "evaluation.judge": Judge, "paper": Paper, "storage": Storage,
}


@dataclass(frozen=True)
class Run:
    """Everything the jobs of one config receive: the paper settings and panels, each
    experiment by name and once per seed (`experiments`: instance -> settings), the grid's
    instances, the prompt source, the evaluation, storage, and the layout every stage but
    principle-driven generation uses (soft.layouts.layout_settings)."""

    paper: Paper
    paper_panels: tuple[Mapping, ...]
    named_experiments: Mapping[str, Experiment]
    experiments: Mapping[str, Experiment]
    grid: tuple[str, ...]
    prompt_source: Mapping[str, Any]
    evaluation: Evaluation
    storage: Storage
    layout: Mapping[str, Any] | None = None

    def to_dict(self) -> dict:
        return {f.name: thaw(getattr(self, f.name)) for f in fields(self)}
