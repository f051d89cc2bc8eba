"""What the workflow checks before any job starts, on the resolved settings (soft.config.resolve)
and the input files they name: a bad value or a bad input file fails here, with one
message, rather than hours into the chain. rules/common.smk calls `check_run` once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from soft.config import HUB_POOL_STATS, prompts_file, rule_resources
from soft.errors import SoftError
from soft.principles import load_exemplars, load_principles
from soft.records import read_prompts
from soft.settings import Experiment, Run, thaw


@dataclass(frozen=True)
class Inputs:
    """What the checks found that the rules use too."""

    prompts_file: str


def prompt_pool_size(source: dict, path: str) -> tuple[int | None, str]:
    """(prompts the pool holds or can hold, how to name it in a message). None: a hub pool
    not fetched with these settings yet, whose size the split job checks."""
    from soft.prompts.hub import known_pool_size
    from soft.prompts.self_instruct import SelfInstructSettings, count_types

    if source["source"] == "file":
        return len(read_prompts(path)), path
    if source["source"] == "hub":
        return known_pool_size(source, path, HUB_POOL_STATS), path
    # the self-instruct pool does not exist yet: check against the most it can hold
    si = SelfInstructSettings.from_config(source)
    n_types = count_types(si.question_types)
    return n_types * si.max_pool, (f"the self-instruct pool ({n_types} types x {si.topics_per_type} topics x "
                                   f"{si.questions_per_topic} questions, before deduplication)")


def check_pool_sizes(experiments: dict[str, dict], n_prompts: int | None, n_exemplars: int,
                     prompts_file: str, exemplars_file: str) -> None:
    """Checks that need the input files: budget fits the prompt pool, and
    icl.shots <= icl.pool_size <= the exemplars in the file. n_prompts None = the pool's
    size is unknown until a job fetches it (prompts.source: hub): the budget is then
    checked when the prompts are split."""
    for name, exp in experiments.items():
        key = f"config key 'experiments.{name}"
        if n_prompts is not None and exp["prompt_budget"] > n_prompts:
            raise SoftError(
                f"{key}.prompt_budget': {exp['prompt_budget']} prompts "
                f"asked but {prompts_file} holds only {n_prompts}"
            )
        icl = exp["icl"]
        shots, pool_size = icl["shots"], icl.get("pool_size")
        if pool_size is not None and pool_size > n_exemplars:
            raise SoftError(
                f"{key}.icl.pool_size': a pool of {pool_size} exemplars asked but "
                f"{exemplars_file} holds only {n_exemplars}"
            )
        pool = n_exemplars if pool_size is None else pool_size
        if shots > pool:
            # Growing pools only grow from round 2 on: round 1 must fit the base pool.
            where = f"{exemplars_file} holds only" if pool_size is None else "icl.pool_size is"
            raise SoftError(f"{key}.icl.shots': {shots} exemplars per prompt but {where} {pool}")


def check_evaluation(evaluation: dict, experiments: dict[str, dict]) -> None:
    """Probe and judge settings that only make sense together, checked at DAG build (a
    judge endpoint without its key variable would otherwise fail after the whole chain)."""
    from soft.records import read_prompts

    both = sorted(set(evaluation.get("tasks") or []) & set(evaluation.get("raw_tasks") or []))
    if both:
        raise SoftError(f"config keys 'evaluation.tasks' and 'evaluation.raw_tasks' both name {', '.join(both)}; "
                        f"a task is scored in one view (layout or raw)")
    if not evaluation.get("tasks") and not evaluation.get("raw_tasks"):
        raise SoftError("config keys 'evaluation.tasks' and 'evaluation.raw_tasks' are both empty")
    probe, judge = evaluation["probe"], evaluation["judge"]
    if probe.get("prompts") is not None:
        read_prompts(probe["prompts"])
    kind = judge["kind"]
    if kind == "none":
        return
    if probe.get("prompts") is None:
        raise SoftError("config key 'evaluation.judge.kind': the judge compares answers to "
                        "evaluation.probe.prompts, which is null")
    if kind == "endpoint":
        from soft.probe.judge import check_endpoint_url

        for field in ("url", "model"):
            if not judge.get(field):
                raise SoftError(f"config key 'evaluation.judge.{field}': needed by judge kind endpoint")
        check_endpoint_url(judge["url"])
        # no key variable: an endpoint without authentication (a local `vllm serve`)
        if judge.get("api_key_env") and not os.environ.get(judge["api_key_env"]):
            raise SoftError(f"config key 'evaluation.judge.api_key_env': environment variable "
                            f"{judge['api_key_env']} is not set")
    elif judge.get("model") is not None:
        from soft.models import check_model_dir

        if not Path(judge["model"]).is_dir():
            raise SoftError(f"config key 'evaluation.judge.model': {judge['model']}: model folder not found")
        try:  # what the judge job's loader checks, now
            check_model_dir(judge["model"], need_tokenizer=True)
        except SoftError as e:
            raise SoftError(f"config key 'evaluation.judge.model': {e}") from None
    ref = judge.get("reference")
    if ref is not None and ref not in experiments:
        raise SoftError(f"config key 'evaluation.judge.reference': no experiment named {ref!r} "
                        f"(experiments: {', '.join(experiments)})")


def check_paper(paper: dict, experiments: dict[str, dict]) -> None:
    for name in paper.get("main") or []:
        if name not in experiments:
            raise SoftError(f"config key 'paper.main': no experiment named {name!r} "
                            f"(experiments: {', '.join(experiments)})")


def check_train_gpus(experiments: Mapping[str, Experiment], train_gpus: int) -> None:
    """QLoRA without a GPU trains on the CPU (bitsandbytes 0.50 has CPU 4-bit kernels): with
    resources.train_model.gpu 0 bitsandbytes must import here, or its jobs would fail after
    hours of generation. Checked when the DAG is built, once."""
    from soft.train.finetune import check_bitsandbytes

    for name, exp in experiments.items():
        if exp.train.method == "qlora" and train_gpus < 1:
            check_bitsandbytes(f"config key 'experiments.{name}.train.method' (resources.train_model.gpu is "
                               f"{train_gpus}, so QLoRA trains on the CPU)")
            return


def check_run(config: dict, run: Run, schema: dict) -> Inputs:
    from soft.generate.vllm_backend import check_vllm_python
    from soft.prompts.hub import check_local_copy
    from soft.resources.base_model import check_source_inputs
    from soft.resources.eval_tasks import check_local_sdist

    source = thaw(run.prompt_source)
    path = prompts_file(source)
    n_prompts, prompts_label = prompt_pool_size(source, path)
    exemplars = load_exemplars(config["exemplars"])
    load_principles(config["principles"])  # checked now, not when the first job reads it
    named = {name: exp.to_dict() for name, exp in run.named_experiments.items()}
    check_pool_sizes(named, n_prompts, len(exemplars), prompts_label, config["exemplars"])
    check_evaluation(run.evaluation.to_dict(), named)
    check_paper(run.paper.to_dict(), named)
    check_train_gpus(run.named_experiments, rule_resources(config, "train_model", schema)["gpu"])
    # inputs that exist before the run, checked as their jobs would check them
    check_source_inputs(config["base_model"]["source"], f"resources/models/{config['base_model']['name']}")
    check_local_sdist(config["benchmarks"], "resources/benchmarks")
    if source["source"] == "hub":
        check_local_copy(source, path)
    check_vllm_python(config.get("vllm_python"))
    return Inputs(prompts_file=path)
