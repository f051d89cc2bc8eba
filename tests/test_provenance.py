"""Unit tests for soft.paper.provenance: real git repositories and real files in tmp_path."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from soft.errors import SoftError
from soft.io import dumps_json, read_json
from soft.paper.provenance import (
    benchmark_fingerprint,
    git_state,
    model_fingerprint,
    package_versions,
    provenance,
    write_provenance,
)

# Identity and signing off: the test must not depend on the user's git configuration.
GIT_CFG = ["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
SOURCE = {"kind": "pypi_gguf", "wheel": "llm-x==0.1", "sha256": "ab" * 32}
CONFIG = {
    "base_model": {"name": "tiny", "source": SOURCE},
    "benchmarks": {"sdist": "bigbench==1.0.0", "sha256": "cd" * 32},
    "experiments": {"a": {"rounds": 2}},
}


@pytest.fixture(autouse=True)
def _no_outer_repo(tmp_path, monkeypatch):
    # Stop git's upward search at tmp_path: a folder there is "not a repository" even
    # when the temporary folder happens to sit inside a checkout.
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *GIT_CFG, "-C", str(repo), *args], capture_output=True,
                          text=True, check=True, timeout=10).stdout.strip()


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.txt").write_text("one\n")
    _git(repo, "add", "a.txt")
    _git(repo, "commit", "-q", "-m", "first")
    return repo


def _model(tmp_path: Path, name: str = "tiny-model", source: dict | None = SOURCE) -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "model.safetensors").write_bytes(bytes(range(64)))
    (d / "config.json").write_text('{"hidden_size": 8}\n')
    (d / "tokenizer.json").write_text('{"vocab": {}}\n')
    (d / "chat_template.jinja").write_text("{{ messages }}\n")
    (d / "notes.md").write_text("not part of the model\n")
    if source is not None:
        (d / "source.json").write_text(dumps_json(source))
    return d


def _benchmarks(tmp_path: Path) -> Path:
    d = tmp_path / "benchmarks"
    d.mkdir()
    (d / "task_a.jsonl").write_text('{"q": 1}\n{"q": 2}\n')
    (d / "task_b.jsonl").write_text('{"q": 3}\n')
    manifest = {
        "sdist": {"spec": "bigbench==1.0.0", "sha256": "cd" * 32, "file": "bigbench-1.0.0.tar.gz"},
        "seed": 0,
        "tasks": {"task_a": {"file": "task_a.jsonl", "records": 2},
                  "task_b": {"file": "task_b.jsonl", "records": 1}},
    }
    (d / "manifest.json").write_text(dumps_json(manifest))
    return d


# ---------------------------------------------------------------- git_state


def test_git_state_clean_then_dirty(tmp_path):
    repo = _repo(tmp_path)
    state = git_state(repo)
    assert state == {"commit": _git(repo, "rev-parse", "HEAD"), "dirty": False}
    assert len(state["commit"]) == 40
    (repo / "untracked.txt").write_text("new\n")
    assert git_state(repo)["dirty"] is False  # untracked files do not count
    (repo / "a.txt").write_text("two\n")
    assert git_state(repo) == {"commit": state["commit"], "dirty": True}


def test_git_state_not_a_repository(tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    assert git_state(folder) == {"commit": None, "dirty": None}
    assert git_state(tmp_path / "missing") == {"commit": None, "dirty": None}


# ---------------------------------------------------------------- package_versions


def test_package_versions():
    versions = package_versions()
    assert versions["torch"] and versions["pandas"] and versions["lm_eval"]
    assert versions["vllm"] is None or isinstance(versions["vllm"], str)
    assert set(versions) >= {"snakemake", "transformers", "peft", "numpy", "safetensors"}
    assert package_versions(("no-such-package-soft-xyz", "pandas")) == {
        "no-such-package-soft-xyz": None, "pandas": versions["pandas"]}


# ---------------------------------------------------------------- model_fingerprint


def test_model_fingerprint(tmp_path):
    d = _model(tmp_path)
    fp = model_fingerprint(d)
    assert fp["name"] == "tiny-model"
    assert fp["source"] == SOURCE
    assert list(fp["files"]) == ["chat_template.jinja", "config.json", "model.safetensors",
                                 "source.json", "tokenizer.json"]
    assert len(fp["sha256"]) == 64
    assert str(tmp_path) not in dumps_json(fp)

    # One byte of the weights changes the file hash and the combined hash, nothing else.
    data = bytearray((d / "model.safetensors").read_bytes())
    data[10] ^= 1
    (d / "model.safetensors").write_bytes(bytes(data))
    fp2 = model_fingerprint(d)
    assert fp2["sha256"] != fp["sha256"]
    assert fp2["files"]["model.safetensors"] != fp["files"]["model.safetensors"]
    assert {k: v for k, v in fp2["files"].items() if k != "model.safetensors"} == \
           {k: v for k, v in fp["files"].items() if k != "model.safetensors"}


def test_model_fingerprint_without_source_and_subfolders(tmp_path):
    d = _model(tmp_path, source=None)
    (d / "sub").mkdir()
    (d / "sub" / "extra.json").write_text("{}\n")
    fp = model_fingerprint(d)
    assert fp["source"] is None
    assert "source.json" not in fp["files"] and not any("sub" in k for k in fp["files"])


def test_model_fingerprint_missing_folder(tmp_path):
    with pytest.raises(SoftError, match="nowhere-model"):
        model_fingerprint(tmp_path / "nowhere-model")


# ---------------------------------------------------------------- benchmark_fingerprint


def test_benchmark_fingerprint(tmp_path):
    d = _benchmarks(tmp_path)
    fp = benchmark_fingerprint(d)
    assert fp["sdist"] == {"spec": "bigbench==1.0.0", "sha256": "cd" * 32, "file": "bigbench-1.0.0.tar.gz"}
    assert set(fp["tasks"]) == {"task_a", "task_b"}
    assert fp["tasks"]["task_a"]["records"] == 2
    assert len(fp["tasks"]["task_b"]["sha256"]) == 64
    before = fp["tasks"]["task_b"]["sha256"]
    (d / "task_b.jsonl").write_text('{"q": 4}\n')
    assert benchmark_fingerprint(d)["tasks"]["task_b"]["sha256"] != before
    assert str(tmp_path) not in dumps_json(fp)


def test_benchmark_fingerprint_errors_name_the_path(tmp_path):
    with pytest.raises(SoftError, match="no-benchmarks"):
        benchmark_fingerprint(tmp_path / "no-benchmarks")
    empty = tmp_path / "empty-bench"
    empty.mkdir()
    with pytest.raises(SoftError, match=r"empty-bench/manifest\.json"):
        benchmark_fingerprint(empty)
    d = _benchmarks(tmp_path)
    (d / "task_a.jsonl").unlink()
    with pytest.raises(SoftError, match=r"task_a\.jsonl"):
        benchmark_fingerprint(d)


# ---------------------------------------------------------------- provenance


def test_provenance_is_deterministic_and_path_free(tmp_path):
    repo = _repo(tmp_path)
    model = _model(tmp_path)
    bench = _benchmarks(tmp_path)
    config = json.loads(json.dumps(CONFIG))
    config["base_model"]["source"] = {"kind": "local", "path": str(tmp_path / "src-model")}
    first = provenance(config, repo, model, bench, extra={"experiment": "a"})
    second = provenance(config, repo, model, bench, extra={"experiment": "a"})
    assert dumps_json(first) == dumps_json(second)
    assert str(tmp_path) not in dumps_json(first)
    assert config["base_model"]["source"]["path"] == str(tmp_path / "src-model")  # not mutated

    assert len(first["config_hash"]) == 16
    assert first["git"]["commit"] == _git(repo, "rev-parse", "HEAD")
    assert first["python"].count(".") == 2
    assert first["packages"]["torch"]
    assert first["base_model"]["config"]["source"]["path"] == "src-model"
    assert first["base_model"]["name"] == "tiny-model"
    assert first["benchmarks"]["config"] == CONFIG["benchmarks"]
    assert first["benchmarks"]["sdist"]["spec"] == "bigbench==1.0.0"
    assert first["experiment"] == "a"
    # what precision: auto means on this machine, from its own CPU flags
    from soft.precision import cpu_bf16_flags, cpu_flags

    assert first["precision"]["cpu_bf16_flags"] == cpu_bf16_flags(cpu_flags())
    assert first["precision"]["auto"] == ("bf16" if cpu_bf16_flags(cpu_flags()) else "fp32")

    out = tmp_path / "out" / "provenance.json"
    write_provenance(out, first)
    assert read_json(out) == first
    assert out.read_text() == dumps_json(first)
    assert [p.name for p in out.parent.iterdir()] == ["provenance.json"]
