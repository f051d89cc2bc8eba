"""Disk: which round models a finished chain keeps (config key storage.keep_round_models).

Round models are whole model folders (13.5 GB each for a 7B model in bf16). With `all`
every round's model stays. With `reported`, once a chain has finished (its stop.json is
written, which needs every evaluation, validation and probe of the chain, and so every
generation, scoring and training that read an earlier round's model), the rounds other
than the reported one (paper.model_round: best or last) are removed and a record says
which. Round 0 is the base model and is never touched.

Snakemake does not rerun a job only because its output was removed while everything
after it is up to date; a later change that needs a removed model (a new evaluation
task, say) retrains that round, and everything downstream of it runs again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from soft.errors import SoftError
from soft.paper.summary import selected_rounds

def reported_round(stop: dict, model_round: str, where: str = "stop.json") -> int:
    """The round the paper's tables report for this chain (soft.paper.summary.selected_rounds)."""
    try:
        return selected_rounds({("chain", 0): stop}, model_round)[("chain", 0)]
    except SoftError as e:
        raise SoftError(f"{where}: {e}") from None


def remove_round_models(models_dir: str | Path, stop: dict, model_round: str) -> dict:
    """Remove results/{exp}/models/round{k} for every round k >= 1 of the chain but the
    reported one; the record of what was kept and removed (relative names only)."""
    models_dir = Path(models_dir)
    keep = reported_round(stop, model_round, f"{models_dir.parent}/stop.json")
    removed, absent = [], []
    for k in range(1, int(stop["rounds_run"]) + 1):
        if k == keep:
            continue
        folder = models_dir / f"round{k}"
        if folder.is_dir():
            shutil.rmtree(folder)
            removed.append(k)
        else:
            absent.append(k)
    if keep >= 1 and not (models_dir / f"round{keep}").is_dir():
        raise SoftError(f"{models_dir}/round{keep}: the reported round's model is missing")
    return {"model_round": model_round, "kept_round": keep, "removed_rounds": removed,
            "already_absent": absent}
