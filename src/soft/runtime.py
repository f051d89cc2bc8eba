"""What every workflow script shares: logging to the rule's log file, thread limits, and
turning a SoftError into one clear message and a non-zero exit (no traceback)."""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable

from soft.errors import SoftError
from soft.gpu_slots import claim_gpus
from soft.io import commit_outputs_together

log = logging.getLogger("soft")


def setup_logging(log_path: str | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w", encoding="utf-8"))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    for noisy in ("httpx", "urllib3", "filelock", "datasets", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, int(n)))


def run(main: Callable, smk, gpus: int | None = None, hub: bool = False) -> None:
    """Run a script's main(snakemake) with logging; exit 1 with one line on SoftError.

    Before main runs, the job claims its GPUs (`gpus`, else the rule's `resources: gpu`)
    and sees only those: this must happen before torch initialises CUDA, which is why
    this module and the soft modules the scripts import at the top never import torch.
    `hub=True` is for a job whose work is a hub download (fetch_prompt_pool): it is not
    made offline, though an HF_HUB_OFFLINE the user set still holds.
    """
    setup_logging(smk.log[0] if len(smk.log) else None)
    # Offline by default: nothing reaches for a hub unless a rule asks for it.
    if not hub:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        if gpus is None:
            gpus = smk.resources.get("gpu", 0)
        claim_gpus(gpus, rule=getattr(smk, "rulename", None))
        with commit_outputs_together(smk.output):
            main(smk)
    except SoftError as e:
        log.error("%s", e)
        sys.exit(1)
