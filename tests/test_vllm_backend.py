"""Unit tests for soft.vllm_backend: engine and sampling arguments, backend choice and the
missing-package error, all without importing vllm."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from soft.errors import SoftError
from soft.generate import STOP_STRINGS, GenerationSettings
from soft.vllm_backend import (
    import_vllm,
    llm_kwargs,
    max_model_len,
    request_seed,
    resolve_backend,
    sampling_kwargs,
    truncate_left,
)

SETTINGS = GenerationSettings(backend="vllm", dtype="bfloat16", max_new_tokens=200, temperature=0.6,
                              top_p=0.9, batch_size=8, max_prompt_tokens=1800)


@pytest.fixture(autouse=True)
def no_vllm_import():
    """Nothing here may import vllm (it is absent from the CPU env, and heavy where present)."""
    before = "vllm" in sys.modules
    yield
    if not before:
        assert "vllm" not in sys.modules


def test_llm_kwargs():
    kw = llm_kwargs("results/soft/models/round2", SETTINGS, seed=7, gpus=4)
    assert kw == {
        "model": "results/soft/models/round2",
        "tokenizer": "results/soft/models/round2",
        "tensor_parallel_size": 4,
        "enable_prefix_caching": True,
        "seed": 7,
        "dtype": "bfloat16",
        "max_model_len": 2000,
        "trust_remote_code": False,
    }
    assert max_model_len(SETTINGS) == 2000


@pytest.mark.parametrize("gpus, tp", [(0, 1), (1, 1), (2, 2), (8, 8)])
def test_tensor_parallel_follows_job_gpus(gpus, tp):
    assert llm_kwargs("m", SETTINGS, 0, gpus)["tensor_parallel_size"] == tp


def test_sampling_kwargs():
    kw = sampling_kwargs(SETTINGS, seed=11)
    assert kw == {"n": 1, "temperature": 0.6, "top_p": 0.9, "max_tokens": 200, "seed": 11,
                  "stop": list(STOP_STRINGS)}
    assert kw["stop"] is not STOP_STRINGS  # a copy: vLLM may keep or alter it
    greedy = sampling_kwargs(GenerationSettings(temperature=0.0), 0)
    assert greedy["temperature"] == 0.0


def test_request_seed_per_prompt():
    a = request_seed(0, "p0001")
    assert a == request_seed(0, "p0001")
    assert a != request_seed(0, "p0002") and a != request_seed(1, "p0001")
    assert 0 <= a < 2 ** 32


def test_truncate_left():
    assert truncate_left([1, 2, 3, 4, 5], 3) == [3, 4, 5]
    assert truncate_left([1, 2], 3) == [1, 2]
    assert truncate_left([], 3) == []


@pytest.mark.parametrize("requested, cuda, has_vllm, expect", [
    ("hf", True, True, "hf"),
    ("hf", False, False, "hf"),
    ("vllm", False, False, "vllm"),  # asked for: import_vllm reports what is missing
    ("vllm", True, True, "vllm"),
    ("auto", True, True, "vllm"),
    ("auto", True, False, "hf"),
    ("auto", False, True, "hf"),
    ("auto", False, False, "hf"),
])
def test_resolve_backend(requested, cuda, has_vllm, expect):
    assert resolve_backend(requested, cuda=cuda, has_vllm=has_vllm) == expect


def test_resolve_backend_unknown():
    with pytest.raises(SoftError, match="config key 'generation.backend': 'tgi'"):
        resolve_backend("tgi", cuda=False, has_vllm=False)


def test_auto_on_this_machine_without_vllm(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else object())
    assert resolve_backend("auto") == "hf"


def test_missing_vllm_is_a_clear_error(monkeypatch):
    # None in sys.modules makes any import of vllm fail, whether or not it is installed.
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(SoftError) as info:
        import_vllm()
    msg = str(info.value)
    assert "generation.backend' is vllm but `import vllm` failed" in msg
    assert "install envs/vllm.yaml" in msg


def test_generate_records_vllm_without_package_fails_before_loading(monkeypatch, tmp_path):
    """backend vllm in the CPU env: the SoftError comes before any model is loaded."""
    import soft.vllm_backend as vb
    from soft.generate import generate_records
    from soft.icl import IclSettings
    from soft.principles import load_principles

    def boom():
        raise SoftError("config key 'generation.backend' is vllm but `import vllm` failed (test): "
                        + vb.INSTALL_HINT)

    monkeypatch.setattr(vb, "import_vllm", boom)
    principles = load_principles(Path(__file__).resolve().parents[1] / "config" / "principles.yaml")
    with pytest.raises(SoftError, match="install envs/vllm.yaml"):
        generate_records([{"id": "p1", "prompt": "Hi?"}], str(tmp_path / "no_model"), principles, [],
                         GenerationSettings(backend="vllm"), IclSettings(shots=0), seed=0, round_k=1)


def test_generate_vllm_with_a_stand_in_engine(monkeypatch, tmp_path):
    """generate_vllm's wiring, against a stand-in `vllm` module: engine arguments, left
    truncation, one seeded SamplingParams per prompt, outputs in input order."""
    import types

    from soft.vllm_backend import generate_vllm

    calls = {}

    class Tok:
        def __call__(self, text):
            return types.SimpleNamespace(input_ids=[ord(c) for c in text])

    class LLM:
        def __init__(self, **kwargs):
            calls["llm"] = kwargs

        def get_tokenizer(self):
            return Tok()

        def generate(self, prompts, params, use_tqdm=True):
            calls["prompts"], calls["params"] = prompts, params
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=f"out{i}")])
                    for i in range(len(prompts))]

    fake = types.ModuleType("vllm")
    fake.LLM, fake.SamplingParams = LLM, lambda **kw: kw
    monkeypatch.setitem(sys.modules, "vllm", fake)
    model = tmp_path / "round1"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"")
    settings = GenerationSettings(max_prompt_tokens=4, max_new_tokens=8)
    out = generate_vllm(model, ["abcdef", "xy"], ["p1", "p2"], settings, seed=3, gpus=2)
    assert out == ["out0", "out1"]
    assert calls["llm"] == llm_kwargs(model, settings, 3, 2)
    assert calls["prompts"] == [{"prompt_token_ids": [ord(c) for c in "cdef"]},
                                {"prompt_token_ids": [ord("x"), ord("y")]}]
    assert calls["params"] == [sampling_kwargs(settings, request_seed(3, "p1")),
                               sampling_kwargs(settings, request_seed(3, "p2"))]


def test_generate_vllm_missing_model_dir(monkeypatch, tmp_path):
    import types

    from soft.vllm_backend import generate_vllm

    monkeypatch.setitem(sys.modules, "vllm", types.ModuleType("vllm"))
    with pytest.raises(SoftError, match="model folder not found"):
        generate_vllm(tmp_path / "nope", ["a"], ["p1"], GenerationSettings(), 0, 1)
