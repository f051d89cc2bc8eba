"""storage.keep_round_models: a finished chain keeps only its reported round's model
(unit tests on folders, the DAG, and a tiny chain run end to end, then rerun)."""

from __future__ import annotations

import json

import pytest
from test_dag import Plan, dry_run, write_config

from soft.config import load_schema
from soft.errors import SoftError
from soft.config import storage_settings
from soft.storage.round_models import remove_round_models


def chain(tmp_path, rounds):
    models = tmp_path / "results" / "soft" / "models"
    for k in range(1, rounds + 1):
        (models / f"round{k}").mkdir(parents=True)
        (models / f"round{k}" / "model.safetensors").write_bytes(b"w")
    return models


def test_best_round_is_kept_and_the_others_removed(tmp_path):
    models = chain(tmp_path, 3)
    stop = {"rounds_run": 3, "early_stop": True, "best_round": 2}
    record = remove_round_models(models, stop, "best")
    assert record == {"model_round": "best", "kept_round": 2, "removed_rounds": [1, 3], "already_absent": []}
    assert sorted(p.name for p in models.iterdir()) == ["round2"]
    # again (a rerun of the rule): nothing left to remove, the kept round untouched
    assert remove_round_models(models, stop, "best")["already_absent"] == [1, 3]
    assert (models / "round2" / "model.safetensors").is_file()


def test_last_round_is_kept_without_early_stop_or_with_model_round_last(tmp_path):
    models = chain(tmp_path, 3)
    assert remove_round_models(models, {"rounds_run": 3, "early_stop": True, "best_round": 1}, "last")[
        "kept_round"] == 3
    assert sorted(p.name for p in models.iterdir()) == ["round3"]


def test_base_model_as_best_round_removes_every_round_model(tmp_path):
    models = chain(tmp_path, 2)
    record = remove_round_models(models, {"rounds_run": 2, "early_stop": True, "best_round": 0}, "best")
    assert record["kept_round"] == 0 and record["removed_rounds"] == [1, 2] and not list(models.iterdir())


def test_a_missing_reported_model_is_an_error(tmp_path):
    models = chain(tmp_path, 2)
    (models / "round2" / "model.safetensors").unlink()
    (models / "round2").rmdir()
    with pytest.raises(SoftError, match="round2: the reported round's model is missing"):
        remove_round_models(models, {"rounds_run": 2, "early_stop": False}, "best")


def test_storage_settings_default_keeps_all():
    assert storage_settings({}, load_schema()) == {"keep_round_models": "all"}
    with pytest.raises(SoftError, match="storage.keep_round_models"):
        storage_settings({"storage": {"keep_round_models": "some"}}, load_schema())


def test_dag_removes_round_models_only_when_asked(tmp_path):
    import yaml

    cfg = write_config(tmp_path, {"soft": {"rounds": 3}, "single_round": {"rounds": 1}})
    assert "remove_round_models" not in Plan(dry_run(tmp_path, cfg)).stats
    raw = yaml.safe_load(cfg.read_text())
    raw["storage"] = {"keep_round_models": "reported"}
    cfg.write_text(yaml.safe_dump(raw))
    plan = Plan(dry_run(tmp_path, cfg))
    for exp in ("soft", "single_round"):
        job = plan.one("remove_round_models", exp=exp)
        rounds = 3 if exp == "soft" else 1
        assert job["input"] == [f"results/{exp}/stop.json"] + [f"results/{exp}/train/round{k}.json"
                                                             for k in range(1, rounds + 1)]
        # the tables read the training records, never a model folder the removal may take
        table_inputs = plan.one("aggregate_metrics")["input"]
        assert f"results/{exp}/train/round1.json" in table_inputs
        assert not [p for p in table_inputs if "/models/" in p]
        assert job["output"] == [f"results/{exp}/round_models_removed.json"]
        assert job["output"][0] in plan.one("all")["input"]


@pytest.mark.e2e
def test_tiny_chain_keeps_its_last_model_and_reruns_nothing(tmp_path, run_snakemake):
    from tiny import tiny_config

    cfg = tiny_config(tmp_path, {"soft": {"rounds": 2}}, storage={"keep_round_models": "reported"},
                      evaluation={"tasks": ["soft_hhh_ab"], "raw_tasks": ["soft_hhh"], "batch_size": 4, "limit": 2,
                                  "judge": {"kind": "none"}})
    run_snakemake(tmp_path, cfg)
    models = tmp_path / "results/soft/models"
    assert sorted(p.name for p in models.iterdir()) == ["round2"]
    record = json.loads((tmp_path / "results/soft/round_models_removed.json").read_text())
    assert record == {"model_round": "best", "kept_round": 2, "removed_rounds": [1], "already_absent": []}
    # the removed round is not rebuilt: everything that read it is up to date
    proc = run_snakemake(tmp_path, cfg, "--dry-run")
    assert "Nothing to be done" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]
