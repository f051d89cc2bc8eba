"""The typed settings (soft.settings): each class holds exactly its schema section's keys,
gives back the resolved mapping it was built from (same keys, same order, so Snakemake's
params and their rerun trigger are unchanged), and cannot be changed by a job."""

import dataclasses
import json
from pathlib import Path

import pytest

from soft.config import (evaluation_settings, included_experiments, load_config, load_schema, paper_settings,
                         resolve, resolve_experiments, seed_instances)
from soft.errors import SoftError
from soft.settings import SECTIONS, Experiment, Train

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ["config/config.yaml"] + sorted(str(p.relative_to(REPO)) for p in (REPO / "config/experiments").glob("*.yaml"))


def schema_node(schema: dict, path: str) -> dict:
    """The schema node a section class reads: `train.lora` is inside an experiment."""
    top, *rest = path.split(".")
    if top in ("evaluation", "paper", "storage"):
        node = schema["properties"][top]
    else:
        node, rest = schema["$defs"]["experiment"], ([] if top == "experiment" else [top, *rest])
    for part in rest:
        node = node["properties"][part]
    return node


@pytest.mark.parametrize("path", sorted(SECTIONS))
def test_each_class_holds_exactly_its_schema_sections_keys(path):
    cls, node = SECTIONS[path], schema_node(load_schema(), path)
    extra = {"name", "seed"} if cls is Experiment else set()  # added per instance by the resolution
    assert set(cls.setting_names()) == set(node["properties"]) | extra, path


@pytest.mark.parametrize("configfile", CONFIGS)
def test_every_shipped_config_resolves_to_settings_that_give_back_its_mappings(configfile, monkeypatch):
    monkeypatch.chdir(REPO)
    config = load_config(configfile)
    schema = load_schema()
    run = resolve(config, schema)
    # the mappings as resolved before the settings were typed
    paper = paper_settings(config, schema)
    named = resolve_experiments({**config, "experiments": included_experiments(config, paper, schema)[0]}, schema)
    instances = seed_instances(named, config.get("seeds"), config.get("seed", 0))
    same_order = json.dumps  # a dict's repr, and Snakemake's params record, follow its key order
    for name, exp in instances.items():
        assert same_order(run.experiments[name].to_dict()) == same_order(exp), name
    for name, exp in named.items():
        assert same_order(run.named_experiments[name].to_dict()) == same_order(exp), name
    assert same_order(run.evaluation.to_dict()) == same_order(evaluation_settings(config, schema))
    assert same_order(run.paper.to_dict()) == same_order(paper)
    assert list(run.grid) == [i for i, e in instances.items() if e["name"] in config["experiments"]]


def test_settings_are_typed_and_cannot_be_changed(monkeypatch):
    monkeypatch.chdir(REPO)
    run = resolve(load_config("config/config.yaml"))
    soft = run.experiments["soft"]
    assert isinstance(soft.train, Train) and soft.train.lora.r == 16 and soft.rounds == 3
    assert isinstance(run.evaluation.tasks, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        soft.train.epochs = 1
    with pytest.raises(TypeError):
        run.experiments["soft"] = soft
    with pytest.raises(TypeError):
        run.layout["template"] = "plain"


def test_a_wrong_mapping_names_the_key(monkeypatch):
    monkeypatch.chdir(REPO)
    train = resolve(load_config("config/config.yaml")).experiments["soft"].train.to_dict()
    with pytest.raises(SoftError, match=r"'experiments.soft.train': unknown setting\(s\) epoch"):
        Train.from_dict({**train, "epoch": 3}, "experiments.soft.train")
    del train["lora"]["r"]
    with pytest.raises(SoftError, match=r"config key 'experiments.soft.train.lora.r' is missing"):
        Train.from_dict(train, "experiments.soft.train")
