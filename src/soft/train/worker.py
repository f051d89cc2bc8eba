"""Entry point of one torchrun rank: `python -m soft.train.worker spec.json`."""

from __future__ import annotations

import logging
import os
import sys

from soft.errors import SoftError
from soft.train.launch import read_spec


def main(argv: list[str]) -> int:
    from soft.train.finetune import run_training

    rank = os.environ.get("RANK", "0")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s rank{rank} %(name)s %(levelname)s: %(message)s")
    if len(argv) != 1:
        print("usage: python -m soft.train.worker SPEC.json", file=sys.stderr)
        return 2
    try:
        run_training(read_spec(argv[0]))
    except SoftError as e:
        logging.getLogger("soft").error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
