"""Same config and seed give the same files: two clean tiny runs compared byte for byte."""

import hashlib
from pathlib import Path

import pytest
from tiny import REPO, tiny_config

pytestmark = pytest.mark.e2e

# Every file under results/ and resources/ is compared, except these (each with its reason);
# logs/ and benchmarks/ hold timings and are outside both folders.
EXCLUDED = {
    # Snakemake's own job metadata written beside outputs, if any: timestamps by design.
    ".snakemake_timestamp": "Snakemake's timestamp marker",
}
ROOTS = ("results", "resources")


SIGNALS_CONFIG = {
    "experiments": {"soft": {"rounds": 2, "train": {"data": "cumulative"},
                             "early_stop": {"validation": str(REPO / "config/validation.jsonl"), "patience": 2}}},
    "evaluation": {"tasks": ["soft_hhh_ab"], "raw_tasks": ["soft_hhh"], "batch_size": 4, "limit": 2,
                   "probe": {"prompts": str(REPO / "config/probe_prompts.jsonl"), "max_new_tokens": 8},
                   "judge": {"kind": "local"}},
}


def digests(root: Path) -> dict[str, str]:
    out = {}
    for top in ROOTS:
        for path in sorted((root / top).rglob("*")):
            if path.is_file() and path.name not in EXCLUDED:
                out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_two_clean_runs_are_byte_identical(tmp_path, run_snakemake):
    runs = []
    for name in ("a", "b"):
        workdir = tmp_path / name
        workdir.mkdir()
        # cumulative training data also runs the multi-file path of train_model here;
        # early stop, probe answers and the local judge write their files too
        cfg = tiny_config(workdir, **SIGNALS_CONFIG)
        run_snakemake(workdir, cfg)
        runs.append(digests(workdir))
    a, b = runs
    assert len(a) > 15 and a.keys() == b.keys()
    for produced in ("results/soft/stop.json", "results/soft/judge.json", "results/soft/probe/round2.jsonl",
                     "results/soft/validation/round2.json", "results/figures/collapse.png"):
        assert produced in a, produced
    differing = [name for name in a if a[name] != b[name]]
    assert not differing, f"files differ between identical runs: {differing}"
    for name in a:  # no absolute path of either run leaks into an output
        if name.endswith((".json", ".jsonl", ".csv", ".md")):
            text = (tmp_path / "a" / name).read_text()
            assert str(tmp_path) not in text, name
