"""End to end through the real Snakemake DAG with a tiny random model: one run of the
single-round baseline, a 3-round SOFT chain and a 3-round SOFT+ chain (the curriculum's
order), shared by the tests below, and two short runs of what that grid cannot show."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from safetensors.torch import load_file
from tiny import tiny_config

pytestmark = pytest.mark.e2e


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from conftest import snakemake

    workdir = tmp_path_factory.mktemp("tiny_run")
    # training_order.yaml's hard_to_easy chain is the same code with the order reversed
    # (tests/test_curriculum.py); its grid's run_name folders are planned in test_dag_training.
    cfg = tiny_config(workdir, experiments={"single_round": {"rounds": 1}, "soft": {"rounds": 3},
                                            "soft_plus": {"rounds": 3, "curriculum": {"order": "easy_to_hard"}}})
    proc = snakemake(workdir, cfg)
    return workdir, cfg, proc


def test_table_has_every_round_of_every_experiment(tiny_run):
    workdir, _, _ = tiny_run
    df = pd.read_csv(workdir / "results/tables/metrics.csv")
    assert list(df.columns) == ["experiment", "round", "task", "metric", "value", "stderr", "n_train_prompts"]
    points = set(zip(df.experiment, df["round"], df.n_train_prompts))
    assert points == {("single_round", 0, 0), ("single_round", 1, 6),
                      ("soft", 0, 0), ("soft", 1, 2), ("soft", 2, 4), ("soft", 3, 6),
                      ("soft_plus", 0, 0), ("soft_plus", 1, 2), ("soft_plus", 2, 4), ("soft_plus", 3, 6)}
    tasks = set(df.task)
    assert {"soft_hhh", "soft_hhh_harmless", "soft_hhh_helpful", "soft_hhh_honest", "soft_hhh_other",
            "soft_truthfulqa_mc1", "soft_truthfulqa_mc2"} <= tasks
    # round 0 is one shared evaluation of the base model
    r0 = df[df["round"] == 0].pivot_table(index=["task", "metric"], columns="experiment", values="value")
    assert (r0["single_round"] == r0["soft"]).all() and (r0["soft"] == r0["soft_plus"]).all()
    assert (workdir / "results/figures/metric_vs_round.png").stat().st_size > 10_000
    assert (workdir / "results/figures/metric_vs_round.pdf").stat().st_size > 1_000


def test_chain_rounds_are_disjoint_and_ids_survive(tiny_run):
    workdir, _, _ = tiny_run
    seen = set()
    for k in (1, 2, 3):
        prompts = jsonl(workdir / f"results/soft/prompts/round{k}.jsonl")
        gens = jsonl(workdir / f"results/soft/data/round{k}_gen.jsonl")
        kept = jsonl(workdir / f"results/soft/data/round{k}.jsonl")
        ids = {p["id"] for p in prompts}
        assert len(ids) == 2 and not ids & seen
        seen |= ids
        assert {g["id"] for g in gens} == ids
        assert all(g["round"] == k and len(g["exemplar_ids"]) == 1 for g in gens)
        assert {r["id"] for r in kept} <= ids
        stats = json.loads((workdir / f"results/soft/data/round{k}_filter.json").read_text())
        assert stats["total"] == 2 and stats["kept"] == len(kept)
    single = {p["id"] for p in jsonl(workdir / "results/single_round/prompts/round1.jsonl")}
    assert single == seen  # same total prompts for the baseline and the chain


def test_each_round_trains_from_the_previous_one(tiny_run):
    workdir, _, _ = tiny_run
    base = load_file(workdir / "resources/models/tiny-llama/model.safetensors")
    previous = "resources/models/tiny-llama"
    for k in (1, 2, 3):
        model_dir = workdir / f"results/soft/models/round{k}"
        card = json.loads((model_dir / "soft_model_card.json").read_text())
        assert card["init"] == previous and card["round"] == k
        assert card["data"][0]["path"] == f"results/soft/data/round{k}.jsonl"
        weights = load_file(model_dir / "model.safetensors")
        assert weights.keys() == base.keys()
        assert any(not (weights[n] == base[n]).all() for n in base), "training changed no weight"
        previous = f"results/soft/models/round{k}"
    assert not (workdir / "results/base_model/models").exists()  # round 0 is never copied


def test_rerun_has_nothing_to_do(tiny_run, run_snakemake):
    workdir, cfg, _ = tiny_run
    proc = run_snakemake(workdir, cfg, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_every_job_logged(tiny_run):
    workdir, _, _ = tiny_run
    logs = list((workdir / "logs").rglob("*.log"))
    rules = {p.parts[-2] if p.parent.name != "logs" else p.stem for p in logs}
    assert {"generate_responses", "filter_responses", "train_model", "evaluate_model"} <= rules
    assert len(list((workdir / "benchmarks").rglob("*.tsv"))) >= 10


def test_a_round_whose_filter_keeps_nothing_fails_clearly(tmp_path, run_snakemake):
    cfg = tiny_config(tmp_path, experiments={"soft": {"rounds": 1, "filter": {"min_chars": 100000}}})
    proc = run_snakemake(tmp_path, cfg, "results/soft/data/round1.jsonl", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "the filter kept none of 6 answers" in out
    assert not (tmp_path / "results/soft/data/round1.jsonl").exists()
    assert not (tmp_path / "results/soft/data/round1_filter.json").exists()


def test_growing_icl_pool_reaches_generation_and_filter(tmp_path, run_snakemake):
    """Round 2 of a growing chain is shown round 1's accepted answers, and its records
    carry what each prompt was shown (ids and text), which the filter reads."""
    from soft.generate.icl import IclSettings, build_pool, choose_exemplars
    from soft.principles import load_exemplars, load_principles

    icl = {"mode": "growing", "shots": 1, "pool_size": 1}
    cfg = tiny_config(tmp_path, experiments={"grow": {"rounds": 2, "icl": icl}})
    run_snakemake(tmp_path, cfg, "results/grow/data/round2.jsonl")
    config = yaml.safe_load(cfg.read_text())
    round1 = jsonl(tmp_path / "results/grow/data/round1.jsonl")
    pool = build_pool(load_exemplars(config["exemplars"]), IclSettings(**icl), config["seed"], [(1, round1)],
                      load_principles(config["principles"]).self_id)
    assert len(pool) == 1 + len(round1) > 1
    assert {e["id"] for e in pool[1:]} == {f"r1:{r['id']}" for r in round1}
    gens = jsonl(tmp_path / "results/grow/data/round2_gen.jsonl")
    for g in gens:
        shown = choose_exemplars(pool, IclSettings(**icl), 0, g["id"])
        assert g["exemplar_ids"] == [e["id"] for e in shown]
        assert g["exemplars"] == [{"id": e["id"], "turns": e["turns"]} for e in shown]
    assert any(i.startswith("r1:") for g in gens for i in g["exemplar_ids"])
    # round 1 drew from the one-exemplar base pool only
    assert {i for g in jsonl(tmp_path / "results/grow/data/round1_gen.jsonl") for i in g["exemplar_ids"]} == {
        pool[0]["id"]}
    stats = json.loads((tmp_path / "results/grow/data/round2_filter.json").read_text())
    assert stats["total"] == len(gens) and "refusal" in stats["dropped"]


def test_soft_plus_trains_easy_to_hard_on_the_chains_prompts(tiny_run):
    """SOFT+ and SOFT train on the same prompts; SOFT+ rounds go easy to hard by the base
    model's perplexity, and every round's model saw its data in the curriculum's order."""
    workdir, _, _ = tiny_run

    def prompts(exp):
        return [[r["id"] for r in jsonl(workdir / f"results/{exp}/prompts/round{k}.jsonl")] for k in (1, 2, 3)]

    scores = {r["id"]: r["nll"] for r in jsonl(workdir / "results/soft_plus/curriculum/pool_scores.jsonl")}
    easy, shuffled = prompts("soft_plus"), prompts("soft")
    assert sorted(sum(easy, [])) == sorted(sum(shuffled, []))  # same data
    flat = [scores[i] for i in sum(easy, [])]
    assert flat == sorted(flat)
    for k in (1, 2, 3):
        card = json.loads((workdir / f"results/soft_plus/models/round{k}/soft_model_card.json").read_text())
        kept = [r["id"] for r in jsonl(workdir / f"results/soft_plus/data/round{k}.jsonl")]
        assert card["ordered"] and card["train_order"] == sorted(kept, key=lambda i: (scores[i], i))
        soft_card = json.loads((workdir / f"results/soft/models/round{k}/soft_model_card.json").read_text())
        assert not soft_card["ordered"] and soft_card["train_order"] is None
