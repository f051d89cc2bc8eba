"""Download BIG-bench's sdist, check its sha256, write HHH / TruthfulQA tasks for lm-eval."""
from pathlib import Path

from soft.resources.eval_tasks import prepare_benchmarks
from soft.runtime import run


def main(smk):
    cfg = smk.params.benchmarks
    out = Path(smk.output[0])
    local = cfg.get("local_file")
    prepare_benchmarks(cfg["sdist"], cfg["sha256"], out, out.parent / "downloads",
                       seed=cfg.get("seed", 0), sdist=Path(local) if local else None)


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
