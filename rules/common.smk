# Config helpers and input functions. Everything computed lives in the `soft` package;
# this file only maps wildcards to paths and settings (soft.config.resolve types them,
# soft.preflight checks them and the input files before any job starts).
import json
from pathlib import Path

from snakemake.exceptions import WorkflowError

from soft.config import BASE_MODEL_EXP, HUB_POOL_STATS, output_dirs, resolve, round_sizes, rule_resources
from soft.resources.eval_tasks import TASK_FUNCTIONS_MODULE
from soft.aggregate.comparisons import comparison_pairs, plan_comparisons
from soft.curriculum.difficulty import is_ordered
from soft.validate.early_stop import validation_kind
from soft.errors import SoftError, refuse
from soft.generate.icl import earlier_rounds
from soft.io import read_json
from soft.preflight import check_run
from soft.settings import thaw


wildcard_constraints:
    exp=r"[A-Za-z][A-Za-z0-9_-]*",
    k=r"\d+",


# Resolve and check the whole config before any job starts: a bad value or a bad input
# file fails here, with one message, rather than hours into the chain.
SCHEMA = load_schema(Path(workflow.basedir) / "config" / "schema" / "config.schema.yaml")
try:
    # Every setting the jobs receive, resolved once and typed (soft.settings.Run;
    # `python -m soft.config show` prints one instance's): the grid's experiments, plus
    # the ablations `snakemake paper` includes, once per seed. Only the paper target asks
    # for the included ones; `all` builds the grid. Params carry each section's to_dict().
    RUN = resolve(config, SCHEMA)
    INPUTS = check_run(config, RUN, SCHEMA)
except SoftError as e:
    refuse(e, "invalid configuration")

PAPER, EXPERIMENTS, GRID, EVALUATION, STORAGE = RUN.paper, RUN.experiments, RUN.grid, RUN.evaluation, RUN.storage
PAPER_PANELS = thaw(RUN.paper_panels)
PROMPT_SOURCE = thaw(RUN.prompt_source)
PROMPTS_FILE = INPUTS.prompts_file
# How every stage but principle-driven generation lays out a (system, user) turn.
LAYOUT = thaw(RUN.layout)
SEED = config.get("seed", 0)
# What lm-eval's result depends on (the probe and judge settings are not).
_EVALUATION_MAPPING = EVALUATION.to_dict()
LM_EVAL_SETTINGS = {
    k: _EVALUATION_MAPPING[k]
    for k in ("tasks", "raw_tasks", "batch_size", "limit", "model_class", "precision")
    if k in _EVALUATION_MAPPING
}
PROBE = EVALUATION.probe
JUDGE = EVALUATION.judge
PROBES = PROBE.prompts is not None
JUDGES = JUDGE.kind != "none"
# The base model's layout settings apply to the judge when the judge is the base model.
JUDGE_LAYOUT = LAYOUT if JUDGE.model is None else None
BASE_MODEL_DIR = f"resources/models/{config['base_model']['name']}"
BENCHMARK_DIR = "resources/benchmarks"
TABLES_DIR, FIGURES_DIR = output_dirs(config)
LOG_SUFFIX = f"_{config['run_name']}" if config.get("run_name") else ""


def resources_of(rule_name):
    return rule_resources(config, rule_name, SCHEMA)


def experiment(wildcards):
    return EXPERIMENTS[wildcards.exp]


def seed_of(wildcards):
    """The experiment's seed (config `seeds`); the shared round-0 jobs use the master seed."""
    cfg = EXPERIMENTS.get(wildcards.exp)
    return cfg.seed if cfg else SEED


def instance_of(name, seed):
    """The instance of experiment `name` run at `seed`."""
    return next(i for i, cfg in EXPERIMENTS.items() if cfg.name == name and cfg.seed == seed)


def round_of(wildcards):
    """The round number, checked against the experiment's chain length."""
    k = int(wildcards.k)
    if wildcards.exp != BASE_MODEL_EXP:
        rounds = EXPERIMENTS[wildcards.exp].rounds
        if k > rounds:
            raise WorkflowError(f"experiment '{wildcards.exp}' has {rounds} rounds; round {k} does not exist")
    return k


def model_dir(exp, k):
    """Round 0 is the base model itself, reached here and never copied."""
    return BASE_MODEL_DIR if int(k) == 0 else f"results/{exp}/models/round{k}"


def generation_model(wildcards):
    """Round k-1's model (generation.model: previous), or the base model in every round
    (base: the bootstrapping control)."""
    k = round_of(wildcards)
    if k < 1:
        raise WorkflowError("generation rounds start at 1 (round 0 is the base model)")
    if experiment(wildcards).generation.model == "base":
        return BASE_MODEL_DIR
    return model_dir(wildcards.exp, k - 1)


def generation_settings(wildcards):
    """What generate_responses does with its model. `model` is left out: it picks the job's
    input folder (generation_model), and as a param it would rerun existing chains."""
    return {k: v for k, v in experiment(wildcards).generation.to_dict().items() if k != "model"}


def train_init_model(wildcards):
    k = round_of(wildcards)
    if experiment(wildcards).train.init == "base":
        return BASE_MODEL_DIR
    return model_dir(wildcards.exp, k - 1)


def train_rounds(wildcards):
    """Rounds whose data round k trains on: its own (train.data: current) or 1..k (cumulative)."""
    k = round_of(wildcards)
    first = 1 if experiment(wildcards).train.data == "cumulative" else k
    return range(first, k + 1)


def train_data(wildcards):
    return [f"results/{wildcards.exp}/data/round{j}.jsonl" for j in train_rounds(wildcards)]


def curriculum_of(wildcards):
    return experiment(wildcards).curriculum.to_dict()


def sorts_pool(wildcards):
    """True when the curriculum sorts the whole budget before the split (SOFT+ across rounds)."""
    cur = curriculum_of(wildcards)
    return is_ordered(cur) and cur["scope"] == "across_rounds"


def orders_rounds(wildcards):
    cur = curriculum_of(wildcards)
    return is_ordered(cur) and cur["scope"] == "within_round"


def split_settings(wildcards):
    """Only what the split depends on: as a param, the whole experiment would make any
    unrelated setting (say train.epochs) re-split the prompts and rerun the chain."""
    exp = experiment(wildcards)
    settings = {"prompt_budget": exp.prompt_budget, "rounds": exp.rounds}
    if sorts_pool(wildcards):
        settings["curriculum_order"] = exp.curriculum.order
    return settings


def split_scores(wildcards):
    return [f"results/{wildcards.exp}/curriculum/pool_scores.jsonl"] if sorts_pool(wildcards) else []


def curriculum_scorer_model(wildcards):
    """Within a round: the base model, or the model that wrote the round (round k-1)."""
    k = round_of(wildcards)
    if curriculum_of(wildcards)["scorer"] == "base":
        return BASE_MODEL_DIR
    return model_dir(wildcards.exp, k - 1)


def training_scores(wildcards):
    """Difficulty scores that fix round k's training order (none: the trainer shuffles)."""
    if sorts_pool(wildcards):
        return [f"results/{wildcards.exp}/curriculum/pool_scores.jsonl"]
    if orders_rounds(wildcards):
        return [f"results/{wildcards.exp}/curriculum/round{j}_scores.jsonl" for j in train_rounds(wildcards)]
    return []


def icl_settings(wildcards):
    return experiment(wildcards).icl.to_dict()


def grown_rounds(wildcards):
    """Rounds j < k whose accepted answers join round k's exemplar pool: in growing mode
    only, so the other modes' generate/filter jobs never wait on earlier rounds' data."""
    return earlier_rounds(icl_settings(wildcards)["mode"], round_of(wildcards))


def grown_data(wildcards):
    return [f"results/{wildcards.exp}/data/round{j}.jsonl" for j in grown_rounds(wildcards)]


def generation_env(wildcards):
    """generate_responses' environment under --sdm conda. vLLM pins its own torch, so it
    has its own env (envs/vllm.yaml; `auto` picks vLLM there when the job sees CUDA);
    transformers generation runs with the training env's pins."""
    if experiment(wildcards).generation.backend == "hf":
        return "../envs/train.yaml"
    return "../envs/vllm.yaml"


def job_gpus(wildcards, resources):
    """The GPUs the job was given (resources.gpu after Snakemake's capping), for vLLM's
    tensor parallelism."""
    return resources.gpu


def eval_model(wildcards):
    return model_dir(wildcards.exp, round_of(wildcards))


def eval_path(exp, k):
    """Round 0 is evaluated once, under BASE_MODEL_EXP, and shared by every experiment."""
    return f"results/{BASE_MODEL_EXP}/eval/round0.json" if k == 0 else f"results/{exp}/eval/round{k}.json"


def cumulative_prompts(exp, k):
    cfg = EXPERIMENTS[exp]
    return sum(round_sizes(cfg.prompt_budget, cfg.rounds)[:k])


# Validation settings shared by every experiment that stops early, when they all use the
# same set and metric (patience may differ): the base model (round 0) is then validated
# once, under BASE_MODEL_EXP.
_VALIDATIONS = {
    json.dumps({"validation": cfg.early_stop.validation, "metric": cfg.early_stop.metric}, sort_keys=True)
    for cfg in EXPERIMENTS.values()
    if cfg.early_stop.validation is not None
}
SHARED_VALIDATION = json.loads(next(iter(_VALIDATIONS))) if len(_VALIDATIONS) == 1 else None


def early_stop_of(exp):
    """The early-stop settings validate_model and the stop record get (a plain mapping)."""
    return SHARED_VALIDATION if exp == BASE_MODEL_EXP else EXPERIMENTS[exp].early_stop.to_dict()


def stops_early(exp):
    return early_stop_of(exp).get("validation") is not None


def validation_is_file(wildcards):
    return validation_kind(early_stop_of(wildcards.exp)["validation"]) == "jsonl"


def validation_path(exp, k):
    """Round 0 is the base model's, shared when every experiment validates alike."""
    if int(k) == 0 and SHARED_VALIDATION is not None:
        exp = BASE_MODEL_EXP
    return f"results/{exp}/validation/round{k}.json"


def goes_on_after(exp, k):
    """Round k's early-stop decision. It comes from the decide_next_round checkpoint:
    until that job has run, asking for it stops the DAG here, so round k+1 is planned
    only once round k's decision can be read."""
    return read_json(checkpoints.decide_next_round.get(exp=exp, k=k).output[0])["continue"]


def rounds_run(exp):
    """Rounds of the chain that run: all of them, or up to the early stop."""
    cfg = EXPERIMENTS[exp]
    if not stops_early(exp):
        return cfg.rounds
    for k in range(1, cfg.rounds):
        if not goes_on_after(exp, k):
            return k
    return cfg.rounds


def stop_inputs(wildcards):
    """The validations the record reports. Also every evaluation and probe of the chain:
    stop.json is then the mark of a finished chain, and each experiment's chain is
    planned as its own decisions come in, not held back by another's."""
    exp = wildcards.exp
    n = rounds_run(exp)
    validations = [validation_path(exp, k) for k in range(n + 1)] if stops_early(exp) else []
    others = [eval_path(exp, k) for k in range(n + 1)]
    if PROBES:
        others += [diagnostics_path(exp, k) for k in range(n + 1)]
    return {"validations": validations, "chain": others}


def probe_path(exp, k):
    """Round 0's probe answers are the base model's, shared like its evaluation."""
    exp = BASE_MODEL_EXP if int(k) == 0 else exp
    return f"results/{exp}/probe/round{k}.jsonl"


def diagnostics_path(exp, k):
    return probe_path(exp, k).replace(".jsonl", "_diagnostics.json")


def judge_comparisons(exp):
    """(round, label, candidate answers, reference answers) for every judged pair of
    answer sets: each round against round 0, and against the reference experiment's
    last round when one is configured."""
    ref = JUDGE.reference
    cfg = EXPERIMENTS[exp]
    # the reference run at the same seed; labelled by its experiment's name, so that
    # every seed's rows share one judge_vs_<reference> column
    ref_run = instance_of(ref, cfg.seed) if ref is not None and ref != cfg.name else None
    pairs = []
    for k in range(1, rounds_run(exp) + 1):
        pairs.append((k, "round0", probe_path(exp, k), probe_path(exp, 0)))
        if ref_run is not None:
            pairs.append((k, ref, probe_path(exp, k), probe_path(ref_run, rounds_run(ref_run))))
    return pairs


def judge_inputs(wildcards):
    return sorted({p for _, _, cand, base in judge_comparisons(wildcards.exp) for p in (cand, base)})


def samples_path(exp, k):
    """lm-eval's per-document outcomes, beside the round's eval JSON."""
    return eval_path(exp, int(k)).replace(".json", "_samples.jsonl")


def training_path(exp, k):
    """Round k's training record (steps, losses): the tables read it, not the model
    folder, which storage.keep_round_models: reported may remove."""
    return f"results/{exp}/train/round{k}.json"


def trained_filters(exp, k):
    """The filter records of the rounds whose data round k's model trained on."""
    if int(k) == 0:
        return []
    first = 1 if EXPERIMENTS[exp].train.data == "cumulative" else int(k)
    return [f"results/{exp}/data/round{j}_filter.json" for j in range(first, int(k) + 1)]


def table_entries(wildcards=None, experiments=None):
    """One entry per (experiment, round) that ran (the grid's experiments unless named):
    its cumulative training prompts and the files whose numbers go into the tidy table."""
    entries = []
    for exp in GRID if experiments is None else experiments:
        for k in range(rounds_run(exp) + 1):
            entries.append(
                {
                    "experiment": exp,
                    "round": k,
                    "n_train_prompts": cumulative_prompts(exp, k),
                    "eval": eval_path(exp, k),
                    "samples": samples_path(exp, k),
                    "validation": validation_path(exp, k) if stops_early(exp) else None,
                    "diagnostics": diagnostics_path(exp, k) if PROBES else None,
                    "filter": f"results/{exp}/data/round{k}_filter.json" if k >= 1 else None,
                    "train_filters": trained_filters(exp, k),
                    "training": training_path(exp, k) if k >= 1 else None,
                }
            )
    return entries


def table_inputs(wildcards, experiments=None):
    files = []
    for e in table_entries(experiments=experiments):
        files += [e[key] for key in ("eval", "samples", "validation", "diagnostics", "filter", "training") if e[key]]
        # cumulative training data: the earlier rounds' filter records too
        files += [p for p in e["train_filters"] if p != e["filter"]]
    return files + judge_files(experiments=experiments)


COMPARISONS = config.get("comparisons", SCHEMA["properties"]["comparisons"]["default"])
# The judge's preference joins metrics.md and the paper's main table only from a strong
# judge behind an endpoint: the offline local judge (the base model) showed no signal (README).
JUDGE_IN_TABLE = JUDGE.kind == "endpoint"


def comparison_specs(wildcards=None, experiments=None, by_name=False, panels=()):
    """The paired comparisons (soft.aggregate.comparisons) over the runs that ran. by_name: seeds
    of an experiment pool into one comparison (the paper); else each run is its own
    experiment (the grid's table has a row per run) and pairs match runs of one seed."""
    runs = {}
    for inst in GRID if experiments is None else experiments:
        cfg = EXPERIMENTS[inst]
        runs[inst] = {
            "experiment": cfg.name if by_name else inst,
            "seed": cfg.seed,
            "rounds_run": rounds_run(inst),
        }
    pairs = comparison_pairs(COMPARISONS, panels)
    if not by_name:
        pairs = [
            {
                "experiment": instance_of(p["experiment"], cfg.seed),
                "reference": instance_of(p["reference"], cfg.seed),
            }
            for p in pairs
            for inst, cfg in EXPERIMENTS.items()
            if cfg.name == p["experiment"]
            and inst in runs
            and any(c.name == p["reference"] and c.seed == cfg.seed for c in EXPERIMENTS.values())
        ]
    return plan_comparisons(runs, pairs, samples_path)


def judge_files(wildcards=None, experiments=None):
    return [f"results/{exp}/judge.json" for exp in (GRID if experiments is None else experiments)] if JUDGES else []


def stop_files(experiments=None):
    return [f"results/{exp}/stop.json" for exp in (GRID if experiments is None else experiments)]


def removal_inputs(wildcards):
    """A chain's models go only once the chain has finished and every round's training
    record, which the tables read instead of the model folders, is written."""
    exp = wildcards.exp
    return {
        "stop": f"results/{exp}/stop.json",
        "training": [training_path(exp, k) for k in range(1, rounds_run(exp) + 1)],
    }


def removal_files(experiments=None):
    """storage.keep_round_models: reported: each finished chain's removal record."""
    if STORAGE.keep_round_models != "reported":
        return []
    return [f"results/{exp}/round_models_removed.json" for exp in (GRID if experiments is None else experiments)]


def final_outputs():
    return [
        f"{TABLES_DIR}/metrics.csv",
        f"{TABLES_DIR}/metrics.md",
        f"{TABLES_DIR}/comparisons.csv",
        f"{FIGURES_DIR}/metric_vs_round.png",
        f"{FIGURES_DIR}/metric_vs_round.pdf",
        f"{FIGURES_DIR}/collapse.png",
        f"{FIGURES_DIR}/collapse.pdf",
        *stop_files(),
        *removal_files(),
    ]


# `snakemake paper`: the grid's experiments and the included ablations, every seed.
PAPER_DIR = f"results/paper/{config['run_name']}" if config.get("run_name") else "results/paper"
PAPER_EXPERIMENTS = list(EXPERIMENTS)
PAPER_MAIN = list(PAPER.main or config["experiments"])


def paper_instances():
    """Instance name -> [experiment name, seed], for the per-seed table."""
    return {i: [cfg.name, cfg.seed] for i, cfg in EXPERIMENTS.items()}


def paper_figures():
    """Figure stems of the paper target: fixed ones plus one per included ablation."""
    return ["benchmarks", "metric_vs_round", "collapse"] + [f"ablation_{p['name']}" for p in PAPER_PANELS]


def paper_outputs():
    files = [
        f"{PAPER_DIR}/{name}"
        for name in (
            "metrics_by_seed.csv",
            "metrics_summary.csv",
            "main_table.csv",
            "main_table.md",
            "main_table.tex",
            "provenance.json",
        )
    ]
    return (
        files
        + [f"{PAPER_DIR}/{stem}.{ext}" for stem in paper_figures() for ext in ("png", "pdf")]
        + removal_files(PAPER_EXPERIMENTS)
    )
