"""Secrets come only from the environment and never land in a file: a tiny end-to-end
run (the grid and the paper target, then the HTML report) judges through an
OpenAI-compatible endpoint (a local HTTP server) with a planted fake key, beside planted
hub and API tokens, and no file the run leaves anywhere it writes may contain any of them:
the working folder (root, results, logs, resources, .snakemake, provenance.json, the HTML
report), the temporary folder and the caches (Hugging Face, datasets, matplotlib, XDG),
each pointed into the test's folder so that it is searched too. Plain text and base64
(the report embeds its files that way) are both searched."""

import base64
import os
import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from test_judge import PLANTED, FakeEndpoint
from tiny import REPO, tiny_config

pytestmark = pytest.mark.e2e

KEY_ENV = "SOFT_TEST_JUDGE_KEY"
OTHER_SECRETS = {"OPENAI_API_KEY": "sk-PLANTED-openai-0000", "HF_TOKEN": "hf_PLANTEDhubtoken0000"}
# Where the run's temporary files and caches go, inside the working folder.
WRITABLE_ENV = {"TMPDIR": "tmp", "HF_HOME": "cache/huggingface", "HF_DATASETS_CACHE": "cache/datasets",
                "MPLCONFIGDIR": "cache/matplotlib", "XDG_CACHE_HOME": "cache/xdg"}


def encodings(secret: str) -> list[bytes]:
    """The secret's bytes, and the base64 text of it at each of the three byte alignments
    (the characters that depend on neighbouring bytes dropped)."""
    raw = secret.encode()
    forms = [raw]
    for shift in range(3):
        text = base64.b64encode(b"\0" * shift + raw)
        start = (shift * 4 + 2) // 3  # characters still holding the padding bytes
        end = len(text) - {0: 0, 1: 3, 2: 2}[(shift + len(raw)) % 3]
        forms.append(text[start:end].rstrip(b"="))
    return forms


def test_the_base64_forms_find_a_secret_at_any_offset():
    for pad in range(4):
        blob = base64.b64encode(b"x" * pad + PLANTED.encode() + b"tail")
        assert any(form in blob for form in encodings(PLANTED)[1:]), pad


def test_planted_keys_reach_no_file(tmp_path):
    FakeEndpoint.requests, FakeEndpoint.fail = [], False
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    writable = {name: tmp_path / sub for name, sub in WRITABLE_ENV.items()}
    for folder in writable.values():
        folder.mkdir(parents=True)
    try:
        url = f"http://127.0.0.1:{server.server_port}/v1/chat/completions"
        cfg = tiny_config(tmp_path, experiments={"soft": {"rounds": 1}},
                          evaluation={"tasks": ["soft_hhh_ab"], "raw_tasks": ["soft_hhh"], "batch_size": 4, "limit": 2,
                                      "probe": {"prompts": str(REPO / "config/probe_prompts.jsonl"),
                                                "max_new_tokens": 8},
                                      "judge": {"kind": "endpoint", "url": url, "model": "judge-model",
                                                "api_key_env": KEY_ENV}})
        env = {**os.environ, KEY_ENV: PLANTED, **OTHER_SECRETS, **{k: str(v) for k, v in writable.items()}}
        cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
               str(tmp_path), "--configfile", str(cfg), "--cores", "2"]
        runs = [subprocess.run(cmd + ["all", "paper"], capture_output=True, text=True, timeout=900, env=env)]
        assert runs[0].returncode == 0, runs[0].stderr[-6000:]
        runs.append(subprocess.run(cmd + ["paper", "--report", "report.html"], capture_output=True, text=True,
                                   timeout=600, env=env))
        assert runs[1].returncode == 0, runs[1].stderr[-6000:]
    finally:
        server.shutdown()
        server.server_close()
    # the judge did use the key, in the header
    assert FakeEndpoint.requests and all(r["auth"] == f"Bearer {PLANTED}" for r in FakeEndpoint.requests)
    assert (tmp_path / "results/soft/judge.json").is_file()
    secrets = {s: encodings(s) for s in (PLANTED, *OTHER_SECRETS.values())}
    for proc in runs:
        for text in (proc.stdout, proc.stderr):
            assert not any(s in text for s in secrets)
    # what the search must have reached, besides results/ and logs/
    must_search = [tmp_path / "report.html", tmp_path / "results/paper/provenance.json", tmp_path / "config.yaml"]
    assert all(p.is_file() for p in must_search)
    searched: set[Path] = set()
    for path in tmp_path.rglob("*"):  # the whole working folder, root to caches
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            for secret, forms in secrets.items():
                assert not any(form in data for form in forms), f"{path} holds planted secret {secret}"
            searched.add(path)
    assert set(must_search) <= searched and len(searched) > 50
    cached = [p for p in searched if tmp_path / "cache" in p.parents]
    assert cached, "the run wrote no cache file: the cache variables no longer reach it"
