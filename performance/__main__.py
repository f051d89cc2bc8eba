"""`python -m performance`: every measurement, results/bench/bench.{json,md} (the package
docstring says what each section measures)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import performance
from performance.backends import BACKEND_PROMPTS, bench_backends
from performance.generation import bench_generation, default_generation_batch
from performance.load import bench_load
from performance.matmul import matmul_flops
from performance.report import markdown, targets
from performance.scaling import SCALING_BUDGET, SCALING_MINUTES, bench_scaling
from performance.scoring import bench_scoring
from performance.training import bench_training
from performance.workflow import dry_run_seconds, workflow_overhead
from soft.io import write_json, write_text

DEFAULT_MODEL = "resources/models/smollm2-135m-instruct"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m performance", description=performance.__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, help="model folder (default: the embedded base model)")
    ap.add_argument("--benchmarks", default="resources/benchmarks", help="lm-eval task folder")
    ap.add_argument("--run-dir", default=".", help="a finished run's folder, for the workflow overhead")
    ap.add_argument("--out", default="results/bench")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (seconds); for the test")
    ap.add_argument("--scaling", action="store_true",
                    help=f"also run the workflow at {SCALING_BUDGET[False]} and {2 * SCALING_BUDGET[False]} prompts "
                         f"(about {SCALING_MINUTES[False]} minutes; with --quick: {SCALING_BUDGET[True]} and "
                         f"{2 * SCALING_BUDGET[True]} prompts on the given model, about {SCALING_MINUTES[True]} minutes)")
    ap.add_argument("--backends", action="store_true",
                    help="also compare the transformers and vLLM generation backends (vLLM from the config "
                         "key's default: this Python if it has vllm, else .venv-vllm; a few minutes)")
    ap.add_argument("--vllm-python", default=None, help="the Python that runs vLLM's engine (--backends)")
    args = ap.parse_args(argv)
    import torch

    from soft.models import check_model_dir

    check_model_dir(args.model, need_tokenizer=True)
    torch.manual_seed(0)
    q = args.quick
    r: dict = {"matmul_n": 512 if q else 2048, "threads": torch.get_num_threads()}
    r["matmul_flops"] = matmul_flops(r["matmul_n"])
    print(f"matmul: {r['matmul_flops'] / 1e9:.1f} GFLOP/s", flush=True)
    r["generation"] = bench_generation(args.model, 3 if q else 16, 8 if q else 96, default_generation_batch())
    print("generation:", json.dumps({k: v for k, v in r["generation"].items()}), flush=True)
    with tempfile.TemporaryDirectory() as d:
        r["training"] = bench_training(args.model, 8 if q else 64, Path(d) / "train", quick=q)
        print("training:", json.dumps(r["training"]), flush=True)
        r["load"] = bench_load(args.model, Path(d) / "load", quick=q)
        print("load:", json.dumps(r["load"]), flush=True)
        if Path(args.benchmarks).is_dir():
            r["scoring"] = bench_scoring(args.model, Path(args.benchmarks), 2 if q else 25)
            print("scoring:", json.dumps(r["scoring"]), flush=True)
    if args.scaling and not Path(args.benchmarks).is_dir():
        r["scaling"] = {"measured": False, "why": f"no benchmark folder at {args.benchmarks} (the runs share it)"}
    elif args.scaling:
        with tempfile.TemporaryDirectory() as d:
            r["scaling"] = bench_scaling(args.model, args.benchmarks, Path(d), quick=q)
    else:
        r["scaling"] = {"measured": False, "why": f"run with --scaling: about {SCALING_MINUTES[q]} minutes"}
    print("scaling:", json.dumps(r["scaling"]), flush=True)
    if args.backends:
        r["backends"] = bench_backends(args.model, 3 if q else BACKEND_PROMPTS, 8 if q else 96,
                                       default_generation_batch(), args.vllm_python)
        print("backends:", json.dumps(r["backends"]), flush=True)
    r["workflow"] = workflow_overhead(Path(args.run_dir))
    r["dry_run_3x50_s"] = None if q else round(dry_run_seconds(3, 50), 2)
    r["targets"] = targets(r)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "bench.json", r)
    write_text(out / "bench.md", markdown(r))
    for name, value, status in r["targets"]:
        print(f"{status:>12}  {name}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
