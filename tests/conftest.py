import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(1, str(REPO))  # the performance bench (performance/), not installed with soft

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def snakemake(workdir: Path, configfile: Path, *args: str, timeout: int = 600,
              check: bool = True) -> subprocess.CompletedProcess:
    """Run the real workflow (this repo's Snakefile) in `workdir`."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--configfile", str(configfile), "--cores", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


@pytest.fixture
def run_snakemake():
    return snakemake


@pytest.fixture(scope="session")
def signals_run(tmp_path_factory) -> Path:
    """One clean tiny run with every signal (tiny.SIGNALS_CONFIG), made once per session:
    the determinism test's first run and the kill-and-resume test's reference."""
    from tiny import SIGNALS_CONFIG, tiny_config

    workdir = tmp_path_factory.mktemp("signals_run")
    snakemake(workdir, tiny_config(workdir, **SIGNALS_CONFIG))
    return workdir
