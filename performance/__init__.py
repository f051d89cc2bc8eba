"""Performance benchmark: each figure next to this machine's own fp32 matmul rate.

    python -m performance                    # SmolLM2 base model, writes results/bench/
    python -m performance --quick --model D  # seconds, any small model folder (the test uses this)
    python -m performance --scaling          # also the workflow at 48 and 96 prompts (about 20 minutes)
    python -m performance --backends         # also transformers vs vLLM generation (needs .venv-vllm)

Run from the repository root (`make bench` does); this folder is not part of the installed
soft package, whose code it measures.

Sections: matmul FLOP/s (the denominator); generation (batched with and without the
shared-prefix cache vs one prompt at a time); LoRA training (the optimisation loop alone,
timed by a Trainer callback, with the real and padded tokens its forward passes ran; the
whole train_model() job separately); base model load (safetensors vs the GGUF it was
converted from); lm-eval scoring (TruthfulQA MC1 and HHH, lm-eval's stock hf class vs
soft-hf-cached, same documents); with --backends, generate_responses' transformers and
vLLM backends on the same prompts (whole job and generation alone); with --scaling, the
workflow at P and 2P prompts (the ratio of wall times); workflow overhead of a finished
run (sum of the jobs' times from benchmarks/ vs the run's wall time) and the dry-run time
of a 3 x 50-round grid. Each target is printed as met, not met, or not measured (with
why). FLOP counts: 2 x parameters per token processed (forward), 4 x for LoRA training
(forward + activation gradients, frozen weights), 6 x for full training.

One module per measurement: matmul (the denominator and the parameter counts), generation,
backends, training, load, scaling, scoring, workflow (overhead and dry run); report (the
targets and bench.md); __main__ (the command).
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
