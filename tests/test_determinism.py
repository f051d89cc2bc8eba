"""Same config and seed give the same files: two clean tiny runs compared byte for byte."""

import pytest
from tiny import SIGNALS_CONFIG, digests, tiny_config

pytestmark = pytest.mark.e2e


def test_two_clean_runs_are_byte_identical(tmp_path, run_snakemake, signals_run):
    # the session's clean run (tests/conftest.py; also the kill test's reference) and one more
    workdir = tmp_path / "b"
    workdir.mkdir()
    # cumulative training data also runs the multi-file path of train_model here;
    # early stop, probe answers and the local judge write their files too
    run_snakemake(workdir, tiny_config(workdir, **SIGNALS_CONFIG))
    a, b = digests(signals_run), digests(workdir)
    assert len(a) > 15 and a.keys() == b.keys()
    for produced in ("results/soft/stop.json", "results/soft/judge.json", "results/soft/probe/round2.jsonl",
                     "results/soft/validation/round2.json", "results/figures/collapse.png"):
        assert produced in a, produced
    differing = [name for name in a if a[name] != b[name]]
    assert not differing, f"files differ between identical runs: {differing}"
    for name in a:  # no absolute path of either run leaks into an output
        if name.endswith((".json", ".jsonl", ".csv", ".md")):
            text = (signals_run / name).read_text()
            assert str(signals_run) not in text and str(workdir) not in (workdir / name).read_text(), name
