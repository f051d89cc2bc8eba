"""What every generation backend shares (soft.generate.responses's transformers backend,
soft.generate.vllm_backend's engine): the decoding settings and where decoding stops. Its own
module so that neither backend imports the other for them."""

from __future__ import annotations

from dataclasses import dataclass

from soft.principles import SEPARATOR, USER_TAG

# Generation stops once the model starts a new conversation or user turn: nothing after
# that can be part of the answer, so decoding it would only cost time.
STOP_STRINGS = ["\n" + USER_TAG, "\n" + SEPARATOR]


@dataclass(frozen=True)
class GenerationSettings:
    backend: str = "auto"  # auto | hf | vllm (soft.generate.vllm_backend.resolve_backend)
    dtype: str = "auto"  # vLLM only; the hf backend follows `precision`
    precision: str = "fp32"  # hf backend: auto | fp32 | bf16 (soft.precision)
    max_new_tokens: int = 160
    temperature: float = 0.7
    top_p: float = 0.95
    batch_size: int = 16
    max_prompt_tokens: int = 1536
