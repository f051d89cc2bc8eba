"""Unit tests for soft.resources.base_model (no downloads; a tiny random model built in-process)."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from soft.resources import base_model as B
from soft.errors import SoftError

CHAT_TEMPLATE = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer random Llama with a word-level tokenizer and a chat template."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    d = tmp_path_factory.mktemp("tiny")
    words = ["<unk>", "<s>", "</s>", "<pad>", "the", "capital", "of", "france", "is", "paris"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                     eos_token="</s>", pad_token="<pad>")
    hf_tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    LlamaForCausalLM(cfg).save_pretrained(d)
    hf_tok.save_pretrained(d)
    return d


def test_validate_source():
    with pytest.raises(SoftError, match="kind"):
        B.validate_source({"kind": "ftp"})
    with pytest.raises(SoftError, match=r"source\.sha256"):
        B.validate_source({"kind": "pypi_gguf", "wheel": "x==1", "gguf_member": "a.gguf"})
    with pytest.raises(SoftError, match="unknown key"):
        B.validate_source({"kind": "local", "path": "m", "revision": "main"})
    with pytest.raises(SoftError, match="mapping"):
        B.validate_source("hub")
    assert B.validate_source({"kind": "hub", "id": "org/m", "revision": "abc"})["id"] == "org/m"


def test_pip_download_failure_reports_stderr(tmp_path, monkeypatch):
    def fake_run(cmd, **kw):
        assert cmd[1:5] == ["-m", "pip", "download", "--no-deps"]
        return subprocess.CompletedProcess(cmd, 1, "", "line1\nERROR: No matching distribution found for nope==9\n")

    monkeypatch.setattr(B.subprocess, "run", fake_run)
    with pytest.raises(SoftError, match=r"(?s)nope==9.*\nline1\n.*No matching distribution"):
        B.pip_download("nope==9", tmp_path)
    assert list(tmp_path.iterdir()) == []  # temp folder removed


def test_pip_download_returns_single_file(tmp_path, monkeypatch):
    def fake_run(cmd, **kw):
        dest = Path(cmd[cmd.index("-d") + 1])
        (dest / "pkg-1.0-py3-none-any.whl").write_bytes(b"wheel")
        return subprocess.CompletedProcess(cmd, 0, "Saved", "")

    monkeypatch.setattr(B.subprocess, "run", fake_run)
    out = B.pip_download("pkg==1.0", tmp_path)
    assert out == tmp_path / "pkg-1.0-py3-none-any.whl" and out.read_bytes() == b"wheel"
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_extract_zip_member(tmp_path):
    whl = tmp_path / "m.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr("pkg/model.gguf", b"GGUF....")
    out = B.extract_zip_member(whl, "pkg/model.gguf", tmp_path / "x")
    assert out.read_bytes() == b"GGUF...." and out.name == "model.gguf"
    with pytest.raises(SoftError, match=r"no member 'pkg/other.gguf'.*pkg/model.gguf"):
        B.extract_zip_member(whl, "pkg/other.gguf", tmp_path)
    bad = tmp_path / "bad.whl"
    bad.write_text("no zip")
    with pytest.raises(SoftError, match="bad.whl"):
        B.extract_zip_member(bad, "a", tmp_path)


def test_local_folder_checks(tmp_path):
    with pytest.raises(SoftError, match="not a folder"):
        B.prepare_base_model({"kind": "local", "path": str(tmp_path / "none")}, tmp_path / "o", tmp_path)
    (tmp_path / "m").mkdir()
    with pytest.raises(SoftError, match="config.json"):
        B.prepare_base_model({"kind": "local", "path": str(tmp_path / "m")}, tmp_path / "o", tmp_path)
    (tmp_path / "m" / "config.json").write_text("{}")
    with pytest.raises(SoftError, match="safetensors"):
        B.prepare_base_model({"kind": "local", "path": str(tmp_path / "m")}, tmp_path / "o", tmp_path)
    (tmp_path / "m" / "model.safetensors").write_bytes(b"")
    with pytest.raises(SoftError, match="tokenizer"):
        B.prepare_base_model({"kind": "local", "path": str(tmp_path / "m")}, tmp_path / "o", tmp_path)
    assert not (tmp_path / "o").exists()


def test_prepare_local_model(tiny_model_dir, tmp_path):
    out = tmp_path / "models" / "tiny"
    B.prepare_base_model({"kind": "local", "path": str(tiny_model_dir)}, out, tmp_path / "work")
    assert (out / "config.json").is_file() and list(out.glob("*.safetensors"))
    src = json.loads((out / "source.json").read_text())
    assert src["source"] == {"kind": "local", "path": tiny_model_dir.name}  # no absolute path
    assert set(src["files_sha256"]) == {"model.safetensors"}
    assert str(tmp_path) not in (out / "source.json").read_text()
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700

    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(out).chat_template == CHAT_TEMPLATE
    assert [p.name for p in out.parent.iterdir()] == ["tiny"]  # no temp folder left


def test_prepare_takes_a_tokenizer_without_chat_template_unless_chat_is_asked(tiny_model_dir, tmp_path):
    """A pretrained model has no chat template: `auto` and `plain` prepare it (the plain
    layout then applies); `template: chat` refuses it with a message naming the key."""
    import shutil

    from transformers import AutoTokenizer

    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    for name in ("chat_template.jinja",):
        (d / name).unlink(missing_ok=True)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(SoftError, match="base_model.template is 'chat' but the tokenizer has no chat template"):
        B.prepare_base_model({"kind": "local", "path": str(d)}, tmp_path / "o", tmp_path, template="chat")
    assert not (tmp_path / "o").exists()
    for template in ("auto", "plain"):
        out = tmp_path / f"o_{template}"
        B.prepare_base_model({"kind": "local", "path": str(d)}, out, tmp_path / "work", template=template)
        assert list(out.glob("*.safetensors")) and not AutoTokenizer.from_pretrained(out).chat_template


def test_fix_modes(tmp_path):
    import tempfile

    d = Path(tempfile.mkdtemp(dir=tmp_path))
    (d / "f").write_text("x")
    (d / "f").chmod(0o600)
    B.fix_modes(d)
    umask = os.umask(0)
    os.umask(umask)
    assert d.stat().st_mode & 0o777 == 0o777 & ~umask
    assert (d / "f").stat().st_mode & 0o777 == 0o666 & ~umask


def test_prepare_keeps_the_source_dtype(tiny_model_dir, tmp_path):
    """A bf16 folder stays bf16 (no fp32 cast that would double a 7B model to 27 GB)."""
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = tmp_path / "bf16"
    AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16).save_pretrained(src)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(src)
    out = tmp_path / "models" / "tiny"
    B.prepare_base_model({"kind": "local", "path": str(src)}, out, tmp_path / "work")
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}
    assert json.loads((out / "source.json").read_text())["dtype"] == "bfloat16"


def test_check_saved_weights_finds_a_changed_tensor(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.save_pretrained(tmp_path / "m")
    assert B.check_saved_weights(model, tmp_path / "m") == len(load_file(tmp_path / "m" / "model.safetensors"))
    tensors = load_file(tmp_path / "m" / "model.safetensors")
    name = "model.layers.1.mlp.down_proj.weight"
    tensors[name] = tensors[name] * 1.001
    save_file(tensors, tmp_path / "m" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(SoftError, match=f"saved tensor {name} differs"):
        B.check_saved_weights(model, tmp_path / "m")
    del tensors[name]
    save_file(tensors, tmp_path / "m" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(SoftError, match="left out 1 tensor"):
        B.check_saved_weights(model, tmp_path / "m")
