"""Dry-run DAG tests of the training readings: which data and which model each round uses."""

import pytest
from test_dag import BASE, dry_run, parse_jobs, write_config


@pytest.mark.parametrize("data_mode", ["current", "cumulative"])
def test_train_data_mode_chooses_the_rounds_trained_on(tmp_path, data_mode):
    cfg = write_config(tmp_path, {"soft": {"rounds": 3, "train": {"data": data_mode, "init": "base"}}})
    proc = dry_run(tmp_path, cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trains = {int(j["wildcards"]["k"]): j for j in parse_jobs(proc.stdout) if j["rule"] == "train_model"}
    assert sorted(trains) == [1, 2, 3]
    for k, job in trains.items():
        data = [f for f in job["input"] if f.startswith("results/soft/data/")]
        first = 1 if data_mode == "cumulative" else k
        assert data == [f"results/soft/data/round{j}.jsonl" for j in range(first, k + 1)]
        assert BASE in job["input"] and not any("models/round" in f for f in job["input"])
