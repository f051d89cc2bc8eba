"""`make rehearse`: the paper config's code paths on this machine, end to end.

    python -m soft.tools.rehearse [--configfile config/experiments/paper_rehearsal.yaml] [--cores N]
                            [-- extra snakemake arguments]

1. `snakemake resources/models/<base model>`: the base model the judge will serve;
2. vLLM's OpenAI server on it, at the host and port of the config's evaluation.judge.url,
   under the name evaluation.judge.model (soft.generate.vllm_server; log: logs/rehearse/serve.log);
3. `snakemake paper --configfile ...`: generation through vLLM, QLoRA, the endpoint judge
   against that server, the paper's tables and figures;
4. the server is stopped, whatever happened. The exit status is Snakemake's.

The config is what a GPU user runs (paper.yaml), with sizes and sources changed
(tests/test_rehearsal.py keeps that difference to a stated list).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from soft.config import extend_config
from soft.errors import SoftError
from soft.generate.vllm_backend import REPO, vllm_interpreter
from soft.generate.vllm_server import serve

DEFAULT_CONFIG = "config/experiments/paper_rehearsal.yaml"


def judge_endpoint(config: dict) -> tuple[str, int, str]:
    """(host, port, served model name) of the config's endpoint judge."""
    judge = (config.get("evaluation") or {}).get("judge") or {}
    if judge.get("kind") != "endpoint" or not judge.get("url"):
        raise SoftError("config key 'evaluation.judge': the rehearsal serves the endpoint judge; "
                        f"kind is {judge.get('kind')!r} and url {judge.get('url')!r}")
    url = urlsplit(judge["url"])
    if url.hostname not in ("127.0.0.1", "localhost") or url.port is None:
        raise SoftError(f"config key 'evaluation.judge.url': {judge['url']}: the rehearsal serves the judge "
                        "on this machine: http://127.0.0.1:<port>/v1/chat/completions")
    return url.hostname, url.port, judge.get("model") or "judge"


def snakemake(args: list[str]) -> int:
    """This checkout's workflow, run in the current folder (a checkout, or a folder holding
    a copy of config/ as the tests make)."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), *args]
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.call(cmd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soft.tools.rehearse", description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", default=DEFAULT_CONFIG)
    parser.add_argument("--cores", default="all")
    parser.add_argument("extra", nargs="*", help="more snakemake arguments (after --)")
    ns = parser.parse_args(argv)
    start = time.monotonic()
    try:
        raw = yaml.safe_load(Path(ns.configfile).read_text(encoding="utf-8")) or {}
        config = extend_config(raw)
        host, port, served_name = judge_endpoint(config)
        python = vllm_interpreter(config.get("vllm_python"))
    except (OSError, SoftError) as e:
        print(f"soft.tools.rehearse: {e}", file=sys.stderr)
        return 2
    common = ["--configfile", ns.configfile, "--cores", str(ns.cores), *ns.extra]
    model_dir = Path("resources/models") / config["base_model"]["name"]
    rc = snakemake([str(model_dir), *common])
    if rc:
        return rc
    log = Path("logs/rehearse/serve.log")
    print(f"soft.tools.rehearse: starting the judge's server ({served_name} = {model_dir}) on {host}:{port}, "
          f"log {log}", flush=True)
    try:
        threads = 1 if (os.cpu_count() or 1) <= 2 else 2
        with serve(python, model_dir, served_name, port, log, host=host, threads=threads):
            print(f"soft.tools.rehearse: server ready after {time.monotonic() - start:.0f} s", flush=True)
            rc = snakemake(["paper", *common])
    except SoftError as e:
        print(f"soft.tools.rehearse: {e}", file=sys.stderr)
        return 2
    print(f"soft.tools.rehearse: {'done' if rc == 0 else f'failed ({rc})'} in {time.monotonic() - start:.0f} s",
          flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
