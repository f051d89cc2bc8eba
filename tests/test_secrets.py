"""Secrets come only from the environment and never land in a file: a tiny end-to-end
run judges through an OpenAI-compatible endpoint (a local HTTP server) with a planted
fake key, beside planted hub and API tokens, and no output, log, benchmark or Snakemake
record may contain any of them."""

import os
import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer

import pytest
from test_judge import PLANTED, FakeEndpoint
from tiny import REPO, tiny_config

pytestmark = pytest.mark.e2e

KEY_ENV = "SOFT_TEST_JUDGE_KEY"
OTHER_SECRETS = {"OPENAI_API_KEY": "sk-PLANTED-openai-0000", "HF_TOKEN": "hf_PLANTEDhubtoken0000"}


def test_planted_keys_reach_no_file(tmp_path):
    FakeEndpoint.requests, FakeEndpoint.fail = [], False
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/v1/chat/completions"
        cfg = tiny_config(tmp_path, experiments={"soft": {"rounds": 1}},
                          evaluation={"tasks": ["soft_hhh"], "batch_size": 4, "limit": 2,
                                      "probe": {"prompts": str(REPO / "config/probe_prompts.jsonl"),
                                                "max_new_tokens": 8},
                                      "judge": {"kind": "endpoint", "url": url, "model": "judge-model",
                                                "api_key_env": KEY_ENV}})
        env = {**os.environ, KEY_ENV: PLANTED, **OTHER_SECRETS}
        cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
               str(tmp_path), "--configfile", str(cfg), "--cores", "2"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
        assert proc.returncode == 0, proc.stderr[-6000:]
    finally:
        server.shutdown()
        server.server_close()
    # the judge did use the key, in the header
    assert FakeEndpoint.requests and all(r["auth"] == f"Bearer {PLANTED}" for r in FakeEndpoint.requests)
    assert (tmp_path / "results/soft/judge.json").is_file()
    secrets = [PLANTED, *OTHER_SECRETS.values()]
    for text in (proc.stdout, proc.stderr):
        assert not any(s in text for s in secrets)
    checked = 0
    for folder in ("results", "logs", "benchmarks", "resources", ".snakemake"):
        for path in (tmp_path / folder).rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert not any(s.encode() in data for s in secrets), f"{path} holds a planted secret"
                checked += 1
    assert checked > 50
