"""Config loading: schema validation, default filling, experiment resolution, cross-field checks.

The Snakefile validates the raw config against config/schema/config.schema.yaml; this
module turns it into one fully resolved settings dict per experiment (schema defaults <-
`defaults` <- the experiment's overrides) and checks what a schema cannot express.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import jsonschema
import yaml

from soft.errors import SoftError
from soft.io import yaml_problem

if TYPE_CHECKING:
    from soft.settings import Run

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "schema" / "config.schema.yaml"
# Round 0's evaluation lives under this name, shared by every experiment.
BASE_MODEL_EXP = "base_model"


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def validate_schema(config: dict, schema: dict | None = None) -> None:
    """Raise SoftError naming the first offending key path, what the schema expects there
    and the value found (shortened): one line, never the schema or the config itself."""
    check_moved_keys(config)
    schema = schema or load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise SoftError(describe_schema_error(errors[0]))


# How each JSON schema type reads in a message.
_TYPE_NAMES = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
               "object": "a mapping", "array": "a list", "null": "null"}
_BOUNDS = (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"))


def short_value(value: Any, limit: int = 60) -> str:
    """A config value as one short line: strings quoted, YAML spellings for true/false/null,
    containers as compact JSON cut at `limit` characters."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, (str, int, float)):
        text = repr(value)
    else:
        text = json.dumps(value, default=str, ensure_ascii=False)
    return _cut(text, limit)


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _key(path) -> str:
    return "config key '" + ".".join(str(p) for p in path) + "'" if path else "the config"


def describe_expected(node: dict) -> str:
    """What a schema node accepts, in words: type, bounds, allowed values, pattern."""
    if "enum" in node:
        return "one of " + ", ".join(short_value(v) for v in node["enum"])
    if "const" in node:
        return short_value(node["const"])
    if "oneOf" in node:
        return _either(node["oneOf"])
    types = _types(node)
    desc = " or ".join(_TYPE_NAMES[t] for t in types if t != "null") or "a value"
    bounds = [f"{op} {node[k]}" for k, op in _BOUNDS if k in node]
    if bounds:
        desc += " " + " and ".join(bounds)
    if node.get("minLength") == 1:
        desc = desc.replace("a string", "a non-empty string")
    elif "minLength" in node:
        desc += f" of at least {node['minLength']} characters"
    if "minItems" in node:
        desc += f" of at least {node['minItems']} item{'s' if node['minItems'] != 1 else ''}"
    if "minProperties" in node:
        desc += f" with at least {node['minProperties']} entr{'ies' if node['minProperties'] != 1 else 'y'}"
    if node.get("uniqueItems"):
        desc += " without repeats"
    if "pattern" in node:
        desc += f" matching {node['pattern']}"
    if "null" in types:
        desc += " or null"
    return desc


def _types(node: dict) -> list[str]:
    types = node.get("type") or []
    return [types] if isinstance(types, str) else list(types)


def _either(branches: list[dict]) -> str:
    """The types a oneOf accepts, each named once (three mapping variants read 'a mapping')."""
    types = list(dict.fromkeys(t for b in branches for t in _types(b)))
    return " or ".join(_TYPE_NAMES[t] for t in types) or "a value"


def _one_of_branch(err: jsonschema.ValidationError) -> jsonschema.ValidationError | str:
    """A oneOf error hides the useful message in its context: the failure inside the branch
    whose discriminator (a `const`, e.g. source.kind) matched and whose type fits; or, when
    no branch's discriminator matched, one message listing the discriminator's values."""
    branches: dict = {}
    for e in err.context:
        branches.setdefault(e.relative_schema_path[0], []).append(e)
    root_type = [b for b in branches.values() if any(e.validator == "type" and not e.relative_path for e in b)]
    if len(root_type) == len(branches):  # the value's type fits no branch
        return f"{_key(err.absolute_path)}: expected {_either(err.validator_value)}, got {short_value(err.instance)}"
    consts = [e for b in branches.values() for e in b if e.validator == "const" and len(e.relative_path) == 1]
    if consts and len(consts) + len(root_type) == len(branches) and len({e.relative_path[0] for e in consts}) == 1:
        where = list(err.absolute_path) + [consts[0].relative_path[0]]
        return (f"{_key(where)}: expected one of {', '.join(short_value(e.validator_value) for e in consts)}, "
                f"got {short_value(consts[0].instance)}")
    matching = [b for b in branches.values() if not any(
        e.validator == "const" or (e.validator == "type" and not e.relative_path) for e in b)]
    candidates = matching[0] if len(matching) == 1 else err.context
    return min(candidates, key=lambda e: (len(e.absolute_path) * -1, len(e.message)))


def describe_schema_error(err: jsonschema.ValidationError) -> str:
    """One line for a schema violation: `config key 'a.b': expected ..., got ...`."""
    while err.validator == "oneOf" and err.context:
        chosen = _one_of_branch(err)
        if isinstance(chosen, str):
            return chosen
        err = chosen
    path, kind, node = list(err.absolute_path), err.validator, err.schema
    if "propertyNames" in err.schema_path:
        # the instance is the offending name itself, one level below the mapping
        if kind == "not":
            reserved = ", ".join(str(v) for v in err.validator_value.get("enum", []))
            expected = f"a name other than {reserved} (reserved)"
        else:
            expected = f"a name matching {err.validator_value}"
        return f"{_key(path + [err.instance])}: expected {expected}, got {short_value(err.instance)}"
    extra = [k for k in err.instance if k not in node.get("properties", {})] if kind == "additionalProperties" else []
    if extra:
        allowed = list(node.get("properties", {}))
        hint = difflib.get_close_matches(str(extra[0]), allowed, n=1, cutoff=0.75)
        hint = f" (did you mean '{hint[0]}'?)" if hint else ""
        return (f"{_key(path + [extra[0]])}: unknown key{hint}; expected one of "
                f"{', '.join(allowed)}, got {short_value(err.instance[extra[0]])}")
    if kind == "required":
        missing = next(r for r in err.validator_value if r not in err.instance)
        expected = describe_expected(node.get("properties", {}).get(missing, {}))
        return f"{_key(path + [missing])}: expected {expected} (required), got nothing"
    if kind in ("type", "enum", "const", "pattern", "minLength", "minItems", "minProperties", "uniqueItems") \
            or kind in dict(_BOUNDS):
        return f"{_key(path)}: expected {describe_expected(node)}, got {short_value(err.instance)}"
    return f"{_key(path)}: {_cut(err.message, 200)}"


def schema_defaults(node: dict, defs: dict) -> Any:
    """The default value tree that a schema node describes (objects recurse)."""
    if "$ref" in node:
        node = {**defs[node["$ref"].split("/")[-1]], **{k: v for k, v in node.items() if k != "$ref"}}
    if node.get("type") == "object" and "properties" in node:
        out = {}
        for name, sub in node["properties"].items():
            value = schema_defaults(sub, defs)
            if value is not None:
                out[name] = value
        return out
    return copy.deepcopy(node.get("default"))


# Keys that moved; an old config fails naming the new place rather than "unexpected key".
MOVED_KEYS = {("generation", "shots"): "icl.shots"}
# Top-level keys that moved: the resources of both curriculum scoring rules were one key
# that named no rule.
MOVED_TOP_KEYS = {("resources", "score_difficulty"): "resources.score_pool_difficulty' and "
                                                     "'resources.score_round_difficulty"}


def check_moved_keys(config: dict) -> None:
    for path, new in MOVED_TOP_KEYS.items():
        node = config
        for part in path:
            node = node.get(part, None) if isinstance(node, dict) else None
        if node is not None:
            raise SoftError(f"config key '{'.'.join(path)}' has moved: set '{new}' instead")
    sections = [("defaults", config.get("defaults"))]
    sections += [(f"experiments.{n}", e) for n, e in (config.get("experiments") or {}).items()]
    for prefix, section in sections:
        for path, new in MOVED_KEYS.items():
            node = section
            for part in path:
                node = node.get(part, None) if isinstance(node, dict) else None
            if node is not None:
                raise SoftError(f"config key '{prefix}.{'.'.join(path)}' has moved: set "
                                f"'{prefix}.{new}' instead")


# Sections with variants whose keys differ (base_model.source by `kind`, prompts by
# `source`): an extending config that switches variant replaces the section instead of
# merging into the base's, which would mix two variants' keys.
VARIANT_SECTIONS = [(("base_model", "source"), "kind"), (("prompts",), "source")]


def _keep_variant(merged: dict, base: dict, overrides: dict, path: tuple[str, ...], key: str) -> None:
    override, original, target = overrides, base, merged
    for part in path[:-1]:
        override, original, target = ((d or {}).get(part) if isinstance(d, dict) else None
                                      for d in (override, original, target))
    if not all(isinstance(d, dict) for d in (override, original, target)):
        return
    section, before = override.get(path[-1]), original.get(path[-1])
    # only where the override names the variant: one that sets sizes (prompts.local_file)
    # inside the base's variant is merged like any other section
    if (isinstance(section, dict) and isinstance(before, dict) and key in section
            and section[key] != before.get(key)):
        target[path[-1]] = copy.deepcopy(section)


def extend_config(config: dict, _chain: tuple[str, ...] = ()) -> dict:
    """An ablation config names the config it modifies (`extends: config/config.yaml`): its
    sections are deep-merged onto that file's, except `experiments`, which replaces the
    base grid (an ablation runs its own experiments, not the default ones as well). The
    base may itself extend another file (paper_rehearsal.yaml -> paper.yaml ->
    config.yaml): it is resolved first; a file met twice on the way is refused."""
    base_path = config.get("extends")
    if base_path is None:
        return config
    path = Path(base_path)
    if not path.is_file():
        raise SoftError(f"config key 'extends': {base_path} not found")
    key = str(path.resolve())
    if key in _chain:
        raise SoftError(f"config key 'extends': {base_path} extends itself through {' -> '.join(_chain)}")
    try:
        base = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise SoftError(yaml_problem(base_path, e)) from None
    if not isinstance(base, dict):
        raise SoftError(f"{base_path}: expected a mapping at the top level")
    base = extend_config(base, _chain + (key,))
    overrides = {k: v for k, v in config.items() if k not in ("extends", "experiments")}
    merged = deep_merge(base, overrides)
    for variant_path, variant_key in VARIANT_SECTIONS:
        _keep_variant(merged, base, overrides, variant_path, variant_key)
    if "experiments" in config:
        merged["experiments"] = copy.deepcopy(config["experiments"])
    return merged


def output_dirs(config: dict) -> tuple[str, str]:
    """Tables and figures folders: results/tables and results/figures for the main grid,
    results/tables/<run_name> and results/figures/<run_name> for a named run (an ablation),
    so one config's table never overwrites another's."""
    name = config.get("run_name")
    suffix = f"/{name}" if name else ""
    return f"results/tables{suffix}", f"results/figures{suffix}"


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_experiments(config: dict, schema: dict | None = None) -> dict[str, dict]:
    """Experiment name -> fully resolved settings (schema defaults <- defaults <- overrides)."""
    schema = schema or load_schema()
    defs = schema["$defs"]
    base = deep_merge(schema_defaults(defs["experiment"], defs), config.get("defaults") or {})
    experiments = {}
    for name, override in config["experiments"].items():
        exp = deep_merge(base, override or {})
        check_experiment(name, exp)
        experiments[name] = exp
    return experiments


def seed_instances(experiments: dict[str, dict], seeds: list[int] | None, seed: int) -> dict[str, dict]:
    """Every experiment once per seed: instance name -> settings, with `name` (the
    experiment's) and `seed` added. The run at the master `seed` keeps the experiment's
    name, so a one-seed grid's results are reused; other seeds are `<name>_seed<s>`."""
    seeds = list(seeds) if seeds else [seed]
    if len(set(seeds)) != len(seeds):
        raise SoftError(f"config key 'seeds': {seeds} repeats a seed")
    out: dict[str, dict] = {}
    for name, exp in experiments.items():
        for s in seeds:
            instance = name if s == seed else f"{name}_seed{s}"
            if instance in out or (instance != name and instance in experiments):
                raise SoftError(f"config key 'seeds': experiment {name!r} at seed {s} would be named "
                                f"{instance!r}, which another experiment already is; rename it")
            out[instance] = {**copy.deepcopy(exp), "name": name, "seed": s}
    return out


def paper_settings(config: dict, schema: dict | None = None) -> dict:
    schema = schema or load_schema()
    default = schema_defaults(schema["properties"]["paper"], schema["$defs"])
    return deep_merge(default, config.get("paper") or {})


# Sections an ablation config may set and still be included in the paper grid: its
# experiments run with the including config's settings (evaluation included).
# An included config's `comparisons` are what it compares when run on its own; in the
# paper each of its experiments is compared with its judge reference (its panel) instead.
INCLUDABLE_KEYS = {"extends", "run_name", "evaluation", "experiments", "comparisons"}


def included_experiments(config: dict, paper: dict, schema: dict | None = None) -> tuple[dict, list[dict]]:
    """The grid's experiments plus those of the configs named in paper.include, and one
    panel per included config ({name: its run_name, file, experiments: in its order}). An
    experiment may appear in several configs only with the same settings (the ablations
    reuse the main grid's chains by name)."""
    def resolved(name: str, override) -> dict:
        return resolve_experiments({"defaults": config.get("defaults"), "experiments": {name: override}},
                                   schema)[name]

    merged = copy.deepcopy(config["experiments"])
    origin = {name: "the grid's experiments" for name in merged}
    panels = []
    for i, path in enumerate(paper.get("include") or []):
        key = f"config key 'paper.include[{i}]'"
        if not Path(path).is_file():
            raise SoftError(f"{key}: {path} not found")
        try:
            other = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise SoftError(yaml_problem(path, e)) from None
        if not isinstance(other, dict) or not isinstance(other.get("experiments"), dict):
            raise SoftError(f"{key}: {path} has no experiments")
        extra = sorted(set(other) - INCLUDABLE_KEYS)
        if extra:
            raise SoftError(f"{key}: {path} also changes {', '.join(extra)}; only configs that "
                            f"differ in their experiments can join the paper grid")
        for name, override in other["experiments"].items():
            if name in merged and resolved(name, merged[name]) != resolved(name, override):
                raise SoftError(f"{key}: experiment {name!r} in {path} differs from {name!r} in "
                                f"{origin[name]}; give it another name")
            merged.setdefault(name, copy.deepcopy(override))
            origin.setdefault(name, path)
        # the ablation's reference (each of its experiments is compared with it): the
        # experiment its config judges against
        reference = ((other.get("evaluation") or {}).get("judge") or {}).get("reference")
        panels.append({"name": other.get("run_name") or Path(path).stem, "file": path,
                       "experiments": list(other["experiments"]),
                       "reference": reference if reference in other["experiments"] else None})
    names = [p["name"] for p in panels]
    if len(set(names)) != len(names):
        raise SoftError(f"config key 'paper.include': two configs share the run_name of {names}")
    return merged, panels


def check_experiment(name: str, exp: dict) -> None:
    from soft.curriculum.difficulty import check_curriculum
    from soft.validate.early_stop import check_early_stop

    key = f"experiments.{name}"
    check_curriculum(f"{key}.curriculum", exp["curriculum"])
    check_early_stop(f"{key}.early_stop", exp["early_stop"], exp["rounds"])
    if exp["rounds"] > exp["prompt_budget"]:
        raise SoftError(
            f"config key '{key}.rounds': {exp['rounds']} rounds need at least that many prompts, "
            f"but prompt_budget is {exp['prompt_budget']}"
        )


SELF_INSTRUCT_POOL = "results/prompt_pool/self_instruct.jsonl"
HUB_POOL = "results/prompt_pool/hub.jsonl"
HUB_POOL_STATS = "results/prompt_pool/hub_stats.json"
# Where each generated source writes its pool (source: file names its own path).
POOL_FILES = {"self_instruct": SELF_INSTRUCT_POOL, "hub": HUB_POOL}


def prompt_source(config: dict, schema: dict | None = None) -> dict:
    """The `prompts` key, normalised: {source: file, path}, or the settings of a generated
    source (self_instruct, hub) with its schema branch's defaults filled in."""
    value = config["prompts"]
    if isinstance(value, str):
        return {"source": "file", "path": value}
    if value["source"] == "file":
        return dict(value)
    schema = schema or load_schema()
    branch = next(b for b in schema["properties"]["prompts"]["oneOf"]
                  if b.get("properties", {}).get("source", {}).get("const") == value["source"])
    settings = deep_merge(schema_defaults({"type": "object", **branch}, schema["$defs"]), value)
    if settings["source"] == "hub":
        from soft.prompts.hub import check_hub_settings

        check_hub_settings(settings)
    return settings


def prompts_file(source: dict) -> str:
    return source["path"] if source["source"] == "file" else POOL_FILES[source["source"]]


def rule_resources(config: dict, rule: str, schema: dict | None = None) -> dict:
    schema = schema or load_schema()
    defs = schema["$defs"]
    default = schema_defaults(defs["rule_resources"], defs)
    return deep_merge(default, (config.get("resources") or {}).get(rule) or {})


KEEP_MODES = ("all", "reported")  # storage.keep_round_models (soft.storage)


def storage_settings(config: dict, schema: dict | None = None) -> dict:
    schema = schema or load_schema()
    default = schema_defaults(schema["properties"]["storage"], schema["$defs"])
    settings = deep_merge(default, config.get("storage") or {})
    if settings["keep_round_models"] not in KEEP_MODES:
        raise SoftError(f"config key 'storage.keep_round_models': {settings['keep_round_models']!r} is not one "
                        f"of {', '.join(KEEP_MODES)}")
    return settings


def evaluation_settings(config: dict, schema: dict | None = None) -> dict:
    schema = schema or load_schema()
    default = schema_defaults(schema["properties"]["evaluation"], schema["$defs"])
    return deep_merge(default, config.get("evaluation") or {})


def config_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def round_sizes(prompt_budget: int, rounds: int) -> list[int]:
    """Prompts per round: as equal as possible, earlier rounds take the remainder."""
    q, r = divmod(prompt_budget, rounds)
    return [q + (1 if i < r else 0) for i in range(rounds)]


def load_config(configfile: str | Path, schema: dict | None = None) -> dict:
    """A config file as the Snakefile reads one given with --configfile: its `extends:`
    chain applied, then the schema check."""
    path = Path(configfile)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        raise SoftError(f"{path}: cannot read ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise SoftError(yaml_problem(path, e)) from None
    if not isinstance(raw, dict):
        raise SoftError(f"{path}: expected a mapping of config keys")
    config = extend_config(raw)
    validate_schema(config, schema or load_schema())
    return config


def resolve(config: dict, schema: dict | None = None) -> "Run":
    """Every setting the jobs of a (schema-checked) config receive, resolved once, typed
    (soft.settings): the paper settings and panels, each experiment (schema defaults <-
    `defaults` <- its overrides <- `paper.include`) by name and once per seed
    (`experiments`: instance -> settings, what every job of that instance is given), the
    grid's instances, the prompt source, the evaluation and storage settings, and the
    layout every stage but principle-driven generation uses. rules/common.smk calls this
    once; `python -m soft.config show` prints it for one instance."""
    from soft.layouts import layout_settings
    from soft.settings import Evaluation, Experiment, Paper, Run, Storage, freeze

    schema = schema or load_schema()
    paper = paper_settings(config, schema)
    all_experiments, panels = included_experiments(config, paper, schema)
    named = resolve_experiments({**config, "experiments": all_experiments}, schema)
    instances = seed_instances(named, config.get("seeds"), config.get("seed", 0))
    return Run(paper=Paper.from_dict(paper, "paper"), paper_panels=freeze(panels),
               named_experiments=MappingProxyType({n: Experiment.from_dict(e, f"experiments.{n}")
                                                   for n, e in named.items()}),
               experiments=MappingProxyType({i: Experiment.from_dict(e, f"experiments.{e['name']}")
                                             for i, e in instances.items()}),
               grid=tuple(i for i, cfg in instances.items() if cfg["name"] in config["experiments"]),
               prompt_source=freeze(prompt_source(config, schema)),
               evaluation=Evaluation.from_dict(evaluation_settings(config, schema), "evaluation"),
               storage=Storage.from_dict(storage_settings(config, schema), "storage"),
               layout=freeze(layout_settings(config["base_model"])))


def section_settings(cls: type, path: str, settings: Any, schema: dict | None = None):
    """Typed settings of one config section (`path`: "train", "train.lora" inside an
    experiment; "evaluation.probe" from the top), as a job or a test gives them: an
    instance as is; a mapping over the section's schema defaults (keys with no default
    must be given)."""
    if isinstance(settings, cls):
        return settings
    schema = schema or load_schema()
    parts = path.split(".")
    if parts[0] in schema["properties"]:
        node, parts = schema["properties"][parts[0]], parts[1:]
    else:
        node = schema["$defs"]["experiment"]
    for part in parts:
        node = node["properties"][part]
    return cls.from_dict(deep_merge(schema_defaults(node, schema["$defs"]) or {}, dict(settings)), path)


def show(config: dict, instance: str, schema: dict | None = None) -> dict:
    """What one experiment instance's jobs receive: its settings, the evaluation, the
    layout, the prompt source, and the resources of every rule the config names."""
    schema = schema or load_schema()
    run = resolve(config, schema)
    if instance not in run.experiments:
        raise SoftError(f"no experiment instance {instance!r} in this config; it has "
                        f"{', '.join(run.experiments)}")
    out = run.to_dict()
    return {"experiment": {"instance": instance, **out["experiments"][instance]},
            "evaluation": out["evaluation"], "layout": out["layout"], "prompt_source": out["prompt_source"],
            "resources": {rule: rule_resources(config, rule, schema) for rule in (config.get("resources") or {})}}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m soft.config",
                                 description="Print the resolved settings one experiment's jobs receive.")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("show", help="the settings of one experiment instance (JSON)")
    p.add_argument("instance", nargs="?", help="experiment instance (without it: list them)")
    p.add_argument("--configfile", default="config/config.yaml")
    a = ap.parse_args(argv)
    try:
        config = load_config(a.configfile)
        if a.instance is None:
            run = resolve(config)
            for name, exp in run.experiments.items():
                where = "grid" if name in run.grid else "paper.include"
                print(f"{name}\t{exp.rounds} rounds, seed {exp.seed} ({where})")
            return 0
        print(json.dumps(show(config, a.instance), indent=1, sort_keys=True))
    except SoftError as e:
        print(f"invalid configuration: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
