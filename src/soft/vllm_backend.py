"""Generation with vLLM's offline engine (generation.backend: vllm, or auto on a CUDA box).

vLLM pins its own torch and transformers (vllm 0.33.0: torch 2.14.0, transformers < 5.21),
so it cannot share the CPU stack's environment: it lives in envs/vllm.yaml and only
generate_responses runs there. Files are the interface: the job reads the merged round
model folder and the prompts, and writes the same generation JSONL the transformers
backend writes. Nothing here imports vllm at module level, so the argument building is
testable (and importable) without it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
from pathlib import Path

from soft.errors import SoftError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "hf", "vllm")
INSTALL_HINT = (
    "install envs/vllm.yaml (conda env create -f envs/vllm.yaml, then `pip install --no-deps -e .` "
    "in that env) and run generate_responses there, or set generation.backend: hf"
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
    """hf or vllm. `auto` takes vllm only when both CUDA and the vllm package are present:
    vLLM has no use on this project's CPU machines, and the CPU env does not carry it.
    Decided in the job, not at DAG build time, because the job's machine is what counts."""
    if requested not in BACKENDS:
        raise SoftError(f"config key 'generation.backend': {requested!r} is not one of {list(BACKENDS)}")
    if requested == "hf":
        return "hf"
    if requested == "vllm":
        return "vllm"  # import_vllm() reports a missing package with the install hint
    has_vllm = vllm_installed() if has_vllm is None else has_vllm
    if not has_vllm:
        return "hf"
    cuda = cuda_available() if cuda is None else cuda
    return "vllm" if cuda else "hf"


def import_vllm():
    try:
        return importlib.import_module("vllm")
    except ImportError as e:
        raise SoftError(f"config key 'generation.backend' is vllm but `import vllm` failed ({e}): "
                        f"{INSTALL_HINT}") from None


def max_model_len(settings) -> int:
    """Context the engine reserves: the (left-truncated) prompt plus the new tokens."""
    return settings.max_prompt_tokens + settings.max_new_tokens


def llm_kwargs(model_dir: str | Path, settings, seed: int, gpus: int) -> dict:
    """Keyword arguments of vllm.LLM for one round's merged model folder."""
    return {
        "model": str(model_dir),
        "tokenizer": str(model_dir),
        # The job's GPUs (resources.gpu); vLLM needs at least one.
        "tensor_parallel_size": max(1, int(gpus)),
        # Every prompt starts with the same principles text: its KV cache is computed once.
        "enable_prefix_caching": True,
        "seed": seed,
        "dtype": settings.dtype,
        "max_model_len": max_model_len(settings),
        "trust_remote_code": False,
    }


def request_seed(seed: int, prompt_id: str) -> int:
    """A per-prompt sampling seed: a prompt's sample does not depend on its batch mates
    or on the order vLLM schedules requests in."""
    return int(hashlib.sha256(f"{seed}:{prompt_id}".encode()).hexdigest()[:8], 16)


def sampling_kwargs(settings, seed: int) -> dict:
    """Keyword arguments of vllm.SamplingParams (temperature 0 = greedy)."""
    from soft.generate import STOP_STRINGS

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


def generate_vllm(model_dir: str | Path, texts: list[str], prompt_ids: list[str], settings,
                  seed: int, gpus: int) -> list[str]:
    """Continuations of `texts`, in order, with vLLM's offline engine."""
    from soft.models import check_model_dir

    vllm = import_vllm()
    check_model_dir(model_dir)
    llm = vllm.LLM(**llm_kwargs(model_dir, settings, seed, gpus))
    tokenizer = llm.get_tokenizer()
    prompts = [{"prompt_token_ids": truncate_left(tokenizer(t).input_ids, settings.max_prompt_tokens)}
               for t in texts]
    params = [vllm.SamplingParams(**sampling_kwargs(settings, request_seed(seed, pid))) for pid in prompt_ids]
    outputs = llm.generate(prompts, params, use_tqdm=False)
    log.info("vllm: %d prompts on %d GPU(s)", len(texts), max(1, int(gpus)))
    return [out.outputs[0].text for out in outputs]
