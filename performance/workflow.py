"""Workflow overhead of a finished run and the dry-run time of a 3 x 50-round grid."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from performance import REPO


def workflow_overhead(run_dir: Path) -> dict | None:
    """Sum of the jobs' wall times (benchmarks/*.tsv) vs the run's wall time (first and
    last timestamp of its newest Snakemake log); None when the folder holds no run."""
    import datetime as dt
    import re

    tsvs = sorted((run_dir / "benchmarks").rglob("*.tsv"))
    logs = sorted((run_dir / ".snakemake" / "log").glob("*.snakemake.log"))
    if not tsvs or not logs:
        return None
    jobs, max_rss = 0.0, 0.0
    for f in tsvs:
        row = f.read_text().splitlines()[-1].split("\t")
        jobs += float(row[0])
        max_rss = max(max_rss, float(row[2]) if row[2] != "NA" else 0.0)
    # the newest log of a complete run (a later `make bench` or dry run logs nothing useful)
    complete = [p for p in logs if "(100%) done" in p.read_text()]
    if not complete:
        return None
    log = complete[-1]
    stamps = re.findall(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]", log.read_text(), re.M)
    if len(stamps) < 2:
        return None
    parse = lambda s: dt.datetime.strptime(" ".join(s.split()), "%a %b %d %H:%M:%S %Y")  # noqa: E731
    wall = (parse(stamps[-1]) - parse(stamps[0])).total_seconds()
    return {"wall_s": wall, "sum_of_jobs_s": round(jobs, 1), "ratio": round(wall / jobs, 3),
            "max_job_rss_mb": max_rss, "jobs": len(tsvs), "log": log.name}


def dry_run_seconds(experiments: int, rounds: int) -> float:
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg["experiments"] = {f"e{i}": {"rounds": rounds, "prompt_budget": rounds} for i in range(experiments)}
    cfg["defaults"]["prompt_budget"] = rounds
    # the whole static DAG: with the early stop on, a dry run plans only up to round 1's
    # decision (a checkpoint), which is not what this figure measures
    cfg["defaults"]["early_stop"] = {"validation": None}
    cfg["evaluation"]["judge"]["reference"] = None  # no single_round in this grid
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.yaml"
        path.write_text(yaml.safe_dump(cfg))
        t = time.perf_counter()
        # --forceall: the same plan (and time) whatever results the checkout already holds
        proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                               "--configfile", str(path), "-n", "--forceall", "--cores", "2", "--quiet", "all"],
                              cwd=REPO, capture_output=True, text=True)
        dt = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError((proc.stdout + proc.stderr)[-2000:])
    return dt
