"""soft.train.cpu_dropout: the faster CPU dropout is Bernoulli dropout with p quantised to
1/32768, repeats under a seed, and replaces exactly peft's LoRA dropout modules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from soft.train.cpu_dropout import LEVELS, CpuDropout, use_cpu_dropout
from tiny import make_tiny_model


def test_drops_the_share_p_and_keeps_the_mean():
    torch.manual_seed(0)
    drop = CpuDropout(0.05).train()
    y = drop(torch.ones(2_000_000))
    dropped = float((y == 0).float().mean())
    assert abs(dropped - 0.05) < 1e-3
    assert abs(float(y.mean()) - 1.0) < 2e-3  # survivors scaled by 1 / (1 - p)
    assert torch.allclose(y[y != 0], torch.tensor(LEVELS / (LEVELS - drop.threshold)))


def test_eval_mode_and_p_zero_pass_through():
    x = torch.randn(64, 8)
    assert CpuDropout(0.3).eval()(x) is x
    assert CpuDropout(0.0).train()(x) is x
    with pytest.raises(ValueError, match="dropout probability"):
        CpuDropout(1.0)


def test_seeded_masks_repeat_and_gradients_flow_through_kept_elements():
    drop = CpuDropout(0.5).train()
    torch.manual_seed(3)
    a = drop(torch.ones(1000))
    torch.manual_seed(3)
    x = torch.ones(1000, requires_grad=True)
    b = drop(x)
    assert torch.equal(a, b)
    b.sum().backward()
    assert torch.equal(x.grad, b.detach())  # d(x * mask * s)/dx = mask * s


def test_replaces_only_lora_dropout(tmp_path):
    from peft import LoraConfig, get_peft_model

    from soft.models import load_causal_lm

    model = load_causal_lm(make_tiny_model(tmp_path / "tiny"), device="cpu")
    lora = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, lora_dropout=0.1, target_modules="all-linear",
                                            task_type="CAUSAL_LM"))
    adapters = sum(1 for n, m in lora.named_modules() if n.endswith("lora_dropout"))
    assert use_cpu_dropout(lora) == adapters > 0
    kinds = {type(m) for n, m in lora.named_modules() if ".lora_dropout." in n}
    assert kinds == {CpuDropout}
    assert not any(isinstance(m, nn.Dropout) for n, m in lora.named_modules() if "lora_dropout" in n)
    ids = torch.tensor([[1, 2, 3, 4]])
    lora.train()
    lora(input_ids=ids, labels=ids).loss.backward()  # trains through the new modules
