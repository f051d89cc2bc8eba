"""Unit tests for soft.generate.vllm_backend: engine and sampling arguments, backend choice, which
interpreter runs the engine, the engine process's command and environment, and the
missing-vLLM errors, all without importing vllm (tests/test_vllm_real.py runs vLLM)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from soft.errors import SoftError
from soft.generate.decoding import STOP_STRINGS, GenerationSettings
from soft.generate.vllm_backend import (
    CPU_KVCACHE_GIB,
    check_vllm_python,
    engine_command,
    engine_env,
    import_vllm,
    llm_kwargs,
    max_model_len,
    request_seed,
    resolve_backend,
    sampling_kwargs,
    truncate_left,
    vllm_interpreter,
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
    kw = llm_kwargs("results/soft/models/round2", SETTINGS, seed=7, gpus=4, cuda=True)
    assert kw == {
        "model": "results/soft/models/round2",
        "tokenizer": "results/soft/models/round2",
        "tensor_parallel_size": 4,
        "enable_prefix_caching": True,
        "seed": 7,
        "dtype": "bfloat16",
        "max_model_len": 2000,
        "trust_remote_code": False,
        "enforce_eager": False,
        "distributed_executor_backend": "mp",
    }
    assert max_model_len(SETTINGS) == 2000


def test_llm_kwargs_cpu_engine():
    """No GPU: eager mode (no 70-90 s graph compilation), the model in the engine's own
    process (no spawned worker), no chunked prefill."""
    kw = llm_kwargs("m", SETTINGS, seed=0, gpus=0, cuda=False)
    assert kw["enforce_eager"] is True
    assert kw["tensor_parallel_size"] == 1 and kw["distributed_executor_backend"] == "uni"
    # every prompt prefilled in one step (a split prompt broke seeded sampling on CPU)
    assert kw["enable_chunked_prefill"] is False and kw["max_num_batched_tokens"] == 4096
    long = GenerationSettings(max_prompt_tokens=6000, max_new_tokens=200)
    assert llm_kwargs("m", long, seed=0, gpus=0, cuda=False)["max_num_batched_tokens"] == 6200


def test_auto_dtype_is_decided_from_the_hardware():
    """vLLM's own `auto` is bfloat16 on every CPU: 3.3 new tokens/s on one without bf16
    units (a rehearsal that timed out). Decided from the CPU's flags instead; an explicit
    dtype is kept."""
    from soft.generate.vllm_backend import engine_dtype

    no_units, amx = frozenset({"avx2", "fma"}), frozenset({"avx2", "amx_bf16"})
    assert engine_dtype("auto", cuda=False, flags=no_units) == "float32"
    assert engine_dtype("auto", cuda=False, flags=amx) == "bfloat16"
    assert engine_dtype("auto", cuda=False, flags=frozenset({"avx512_bf16"})) == "bfloat16"
    assert engine_dtype("auto", cuda=True, cuda_bf16=True) == "bfloat16"
    assert engine_dtype("auto", cuda=True, cuda_bf16=False) == "auto"  # vLLM: the stored dtype
    assert engine_dtype("bfloat16", cuda=False, flags=no_units) == "bfloat16"
    auto = GenerationSettings(dtype="auto")
    assert llm_kwargs("m", auto, seed=0, gpus=0, cuda=False, flags=no_units)["dtype"] == "float32"


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
    assert "make vllm-env" in msg and "--sdm conda" in msg


def fake_model(tmp_path) -> Path:
    model = tmp_path / "round1"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"")
    return model


def test_vllm_interpreter_order(tmp_path):
    """The configured vllm_python, else this Python when it has vllm, else .venv-vllm."""
    venv = tmp_path / ".venv-vllm/bin/python"
    venv.parent.mkdir(parents=True)
    venv.write_text("")
    venv.chmod(0o755)
    other = tmp_path / "other-python"
    other.write_text("")
    other.chmod(0o755)
    assert vllm_interpreter(str(other), here_has_vllm=True, default=venv) == str(other)
    assert vllm_interpreter(None, here_has_vllm=True, default=venv) == sys.executable
    assert vllm_interpreter(None, here_has_vllm=False, default=venv) == str(venv)
    with pytest.raises(SoftError, match="has no vllm package and .*does not exist: run `make vllm-env`"):
        vllm_interpreter(None, here_has_vllm=False, default=tmp_path / "nope")


def test_check_vllm_python(tmp_path):
    check_vllm_python(None)
    check_vllm_python(sys.executable)
    with pytest.raises(SoftError, match="config key 'vllm_python': .*nope: no such Python interpreter"):
        check_vllm_python(str(tmp_path / "nope"))
    not_executable = tmp_path / "python"
    not_executable.write_text("")
    with pytest.raises(SoftError, match="config key 'vllm_python'"):
        check_vllm_python(str(not_executable))


def test_engine_env_sets_only_what_the_caller_left_unset():
    cpu = engine_env({"PATH": "/bin"}, cuda=False, threads=3)
    assert cpu == {"PATH": "/bin", "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
                   "VLLM_CPU_KVCACHE_SPACE": str(CPU_KVCACHE_GIB), "VLLM_CPU_OMP_THREADS_BIND": "nobind",
                   "OMP_NUM_THREADS": "3"}
    mine = {"VLLM_CPU_KVCACHE_SPACE": "8", "OMP_NUM_THREADS": "1", "VLLM_CPU_OMP_THREADS_BIND": "0-1"}
    assert engine_env(mine, cuda=False, threads=3) == {**mine, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    assert engine_env({}, cuda=True, threads=3) == {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}


def test_generate_records_vllm_without_vllm_fails_before_loading(monkeypatch, tmp_path):
    """backend vllm, no vllm in this Python and no .venv-vllm: one SoftError naming the
    ways out, before any model is loaded or process started."""
    import soft.generate.vllm_backend as vb
    from soft.generate.responses import generate_records
    from soft.generate.icl import IclSettings
    from soft.principles import load_principles

    monkeypatch.setattr(vb, "vllm_installed", lambda: False)
    monkeypatch.setattr(vb, "DEFAULT_VLLM_PYTHON", tmp_path / "no-venv/bin/python")
    monkeypatch.setattr(subprocess, "Popen", None)  # starting the engine would fail differently
    principles = load_principles(Path(__file__).resolve().parents[1] / "config" / "principles.yaml")
    with pytest.raises(SoftError, match="no-venv/bin/python does not exist: run `make vllm-env`"):
        generate_records([{"id": "p1", "prompt": "Hi?"}], str(fake_model(tmp_path)), principles, [],
                         GenerationSettings(backend="vllm"), IclSettings(shots=0), seed=0, round_k=1)


def test_engine_command_runs_the_module_in_another_python(tmp_path):
    """The engine command's bootstrap finds this soft package from any interpreter and runs
    soft.generate.vllm_backend's main: here in a Python without vllm, which fails with the
    SoftError's one line and exit code 1, writing no result."""
    import json

    request, result = tmp_path / "request.json", tmp_path / "result.json"
    request.write_text(json.dumps({"model_dir": str(fake_model(tmp_path)), "texts": ["a"], "prompt_ids": ["p1"],
                                   "settings": {}, "seed": 0, "gpus": 0}))
    cmd = engine_command(sys.executable, request, result)
    assert cmd[:2] == [sys.executable, "-c"]
    # -S: no site-packages, so neither vllm nor an installed soft can be found but through
    # the path the bootstrap appends
    proc = subprocess.run([cmd[0], "-S", *cmd[1:]], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1, proc.stderr
    assert "`import vllm` failed" in proc.stderr and "Traceback" not in proc.stderr
    assert not result.exists()


def test_run_engine_with_a_stand_in_engine(monkeypatch, tmp_path):
    """run_engine's wiring (the engine process's work), against a stand-in `vllm` module:
    engine arguments, left truncation, one seeded SamplingParams per prompt, outputs in
    input order, new-token counts."""
    import types

    from soft.generate.vllm_backend import run_engine

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
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=f"out{i}", token_ids=[7] * (i + 1))])
                    for i in range(len(prompts))]

    fake = types.ModuleType("vllm")
    fake.LLM, fake.SamplingParams = LLM, lambda **kw: kw
    monkeypatch.setitem(sys.modules, "vllm", fake)
    model = fake_model(tmp_path)
    settings = GenerationSettings(max_prompt_tokens=4, max_new_tokens=8)
    out = run_engine({"model_dir": str(model), "texts": ["abcdef", "xy"], "prompt_ids": ["p1", "p2"],
                      "settings": {"max_prompt_tokens": 4, "max_new_tokens": 8}, "seed": 3, "gpus": 2})
    assert out["continuations"] == ["out0", "out1"]
    assert out["new_tokens"] == 3 and out["prompt_tokens"] == 6
    assert calls["llm"] == llm_kwargs(model, settings, 3, 2, cuda=False)
    assert calls["prompts"] == [{"prompt_token_ids": [ord(c) for c in "cdef"]},
                                {"prompt_token_ids": [ord("x"), ord("y")]}]
    assert calls["params"] == [sampling_kwargs(settings, request_seed(3, "p1")),
                               sampling_kwargs(settings, request_seed(3, "p2"))]


def test_generate_vllm_missing_model_dir(monkeypatch, tmp_path):
    import types

    from soft.generate.vllm_backend import generate_vllm

    monkeypatch.setitem(sys.modules, "vllm", types.ModuleType("vllm"))
    with pytest.raises(SoftError, match="model folder not found"):
        generate_vllm(tmp_path / "nope", ["a"], ["p1"], GenerationSettings(), 0, 1)
