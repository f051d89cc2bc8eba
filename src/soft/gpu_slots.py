"""Give each job its own GPUs on one machine.

Snakemake counts `resources: gpu=N` against `--resources gpu=M` but never says *which*
devices a job may use: without this, every GPU job on a multi-GPU box would pile onto
device 0. Each job therefore claims free device ids itself, through one lock file per
device under `.snakemake/gpu_slots/`, and exports them as CUDA_VISIBLE_DEVICES before
anything imports torch.

The locks are `flock`s held on open file descriptors for the life of the job process,
so the kernel drops them when the process exits, normally or by SIGKILL / OOM: a crashed
job never leaves a device taken. Claims are all-or-nothing (a job that gets only some
of its devices gives them back and waits), so two jobs can never deadlock each holding
half of what the other needs.

Under SLURM the scheduler has already chosen the devices and set CUDA_VISIBLE_DEVICES;
lock files on a shared filesystem would also make jobs on different nodes wait for each
other's (different) device 0. So inside a SLURM job a GPU job keeps what it was given
(a CPU job is still hidden from every GPU).

Environment:
  SOFT_GPU_SLOTS      auto (default) | on (claim even inside SLURM, e.g. one `salloc`
                      running a local Snakemake) | off (touch nothing)
  SOFT_GPU_COUNT      pretend the machine has this many GPUs (tests; or to use fewer)
  SOFT_GPU_SLOT_DIR   lock directory (default .snakemake/gpu_slots, per working
                      directory; point several workflows on one box at the same one)
  SOFT_GPU_WAIT_S     how long a job waits for busy devices (default 3600 s)
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from soft.errors import SoftError

log = logging.getLogger(__name__)

DEFAULT_LOCK_DIR = ".snakemake/gpu_slots"
DEFAULT_WAIT_S = 3600.0

# Open descriptors of the locks this process holds. Module-level so they live as long as
# the process: closing one (or letting it be garbage-collected) would release the device.
_held: dict[str, int] = {}


def machine_devices(env: dict | None = None) -> tuple[list[str], str]:
    """The device ids jobs may share, and where that list came from (for messages).

    SOFT_GPU_COUNT wins (tests, or a deliberate cap); then CUDA_VISIBLE_DEVICES as the
    user set it for the whole run (its ids are kept as given, so a run started with
    CUDA_VISIBLE_DEVICES=4,5 hands out 4 and 5); then the GPUs `nvidia-smi -L` lists.
    """
    env = os.environ if env is None else env
    count = env.get("SOFT_GPU_COUNT")
    if count not in (None, ""):
        try:
            n = int(count)
        except ValueError:
            n = -1
        if n < 0:
            raise SoftError(f"SOFT_GPU_COUNT must be a non-negative integer, got {count!r}")
        return [str(i) for i in range(n)], f"SOFT_GPU_COUNT={n}"
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = []
        for item in (x.strip() for x in visible.split(",")):
            # CUDA stops enumerating at the first invalid entry ("-1" is the usual way to
            # hide every device), so the ids after it are not visible either.
            if not item or item.startswith("-"):
                break
            ids.append(item)
        return ids, f"CUDA_VISIBLE_DEVICES={visible!r}"
    return _nvidia_smi_devices(), "nvidia-smi -L"


def _nvidia_smi_devices() -> list[str]:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (FileNotFoundError, PermissionError, subprocess.TimeoutExpired):
        return []
    if out.returncode != 0:
        return []
    # "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-...)"; MIG instances are indented lines.
    return [m.group(1) for m in re.finditer(r"^GPU (\d+):", out.stdout, re.M)]


def in_slurm_job(env: dict | None = None) -> bool:
    env = os.environ if env is None else env
    return bool(env.get("SLURM_JOB_ID"))


def _lock_name(device: str) -> str:
    # Ids may be GPU UUIDs or MIG names: keep the file name to safe characters.
    return "gpu_" + re.sub(r"[^A-Za-z0-9_.-]", "_", device) + ".lock"


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "?"
    except OSError:
        return "?"


def acquire(n: int, devices: list[str], lock_dir: str | Path = DEFAULT_LOCK_DIR,
            timeout_s: float = DEFAULT_WAIT_S, poll_s: float = 0.5, label: str = "this job") -> list[str]:
    """Lock `n` of `devices` for the rest of this process's life; return their ids.

    Waits (polling) while fewer than `n` are free; SoftError after `timeout_s`.
    """
    if n > len(devices):
        raise SoftError(f"{label} asks for {n} GPUs but only {len(devices)} exist")
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    next_note = 0.0
    while True:
        got: list[tuple[str, int]] = []
        for dev in devices:
            if dev in _held:  # already ours (a second call in the same process)
                continue
            fd = _try_lock(lock_dir / _lock_name(dev))
            if fd is not None:
                got.append((dev, fd))
                if len(got) == n:
                    break
        if len(got) == n:
            stamp = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%dT%H:%M:%S')} ({label})\n"
            for dev, fd in got:
                # Who holds it, for the "waiting" message of the next job; the lock, not
                # this text, is what counts.
                os.ftruncate(fd, 0)
                os.pwrite(fd, stamp.encode(), 0)
                _held[dev] = fd
            return [dev for dev, _ in got]
        # All or nothing: keeping a partial claim while waiting could deadlock two jobs.
        for _, fd in got:
            os.close(fd)
        now = time.monotonic()
        if now >= deadline:
            busy = {d: _holder(lock_dir / _lock_name(d)) for d in devices}
            raise SoftError(
                f"{label} waited {timeout_s:.0f} s for {n} free GPUs of {len(devices)} in {lock_dir}; "
                f"held: {busy}. Lower `--resources gpu=` to the number of devices, or raise "
                f"SOFT_GPU_WAIT_S if another workflow shares this machine"
            )
        if now >= next_note:
            log.info("%s waits for %d free GPUs of %d (lock dir %s)", label, n, len(devices), lock_dir)
            next_note = now + 60
        time.sleep(poll_s)


def claim_gpus(gpu: int, rule: str | None = None, env: dict | None = None) -> list[str] | None:
    """Set CUDA_VISIBLE_DEVICES for a job that asked for `gpu` devices.

    Must run before torch initialises CUDA (CUDA reads the variable once). Returns the
    ids claimed, [] for a CPU job (which sees no GPU), None when the devices are left to
    someone else (a GPU job under SLURM, or SOFT_GPU_SLOTS=off).
    """
    env = os.environ if env is None else env
    mode = env.get("SOFT_GPU_SLOTS", "auto").lower()
    if mode not in ("auto", "on", "off"):
        raise SoftError(f"SOFT_GPU_SLOTS must be auto, on or off, got {mode!r}")
    gpu = int(gpu or 0)
    label = f"rule {rule}" if rule else "this job"
    if mode == "off":
        return None
    _check_cuda_not_initialised()
    if gpu <= 0:
        # A CPU job on a GPU box must not wander onto device 0 (transformers and lm-eval
        # pick CUDA whenever they see it) and take memory another job was promised; the
        # same holds in a SLURM job on a cluster that does not fence devices off.
        env["CUDA_VISIBLE_DEVICES"] = ""
        return []
    if mode == "auto" and in_slurm_job(env):
        log.info("SLURM job %s: GPUs chosen by the scheduler (CUDA_VISIBLE_DEVICES=%s)",
                 env.get("SLURM_JOB_ID"), env.get("CUDA_VISIBLE_DEVICES", "<unset>"))
        return None
    devices, source = machine_devices(env)
    if gpu > len(devices):
        # Snakemake would cap the request to --resources silently; say so instead.
        where = rule or "<rule>"
        raise SoftError(
            f"{label} asks for {gpu} GPUs (resources: gpu={gpu}) but this machine has "
            f"{len(devices)} ({source}). Lower the config key resources.{where}.gpu or the "
            f"profile's set-resources {where}: gpu"
        )
    try:
        wait_s = float(env.get("SOFT_GPU_WAIT_S") or DEFAULT_WAIT_S)
    except ValueError:
        raise SoftError(f"SOFT_GPU_WAIT_S must be a number of seconds, got {env['SOFT_GPU_WAIT_S']!r}")
    lock_dir = env.get("SOFT_GPU_SLOT_DIR") or DEFAULT_LOCK_DIR
    ids = acquire(gpu, devices, lock_dir, timeout_s=wait_s, label=label)
    env["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
    log.info("%s: GPUs %s (of %d, %s)", label, env["CUDA_VISIBLE_DEVICES"], len(devices), source)
    return ids


def _check_cuda_not_initialised() -> None:
    # Importing torch is harmless (CUDA reads CUDA_VISIBLE_DEVICES when it initialises),
    # but once it has initialised, a new value is silently ignored: fail loudly instead.
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None) if torch is not None else None
    if cuda is not None and getattr(cuda, "is_initialized", lambda: False)():
        raise RuntimeError("soft.gpu_slots.claim_gpus ran after CUDA was initialised; "
                           "call it before anything touches torch.cuda")


def release_all() -> None:
    """Give back every device this process holds (tests; jobs just exit)."""
    for dev in list(_held):
        os.close(_held.pop(dev))


def visible_gpu_count(env: dict | None = None) -> int:
    """GPUs this job may use, whoever chose them (this module or SLURM): what a backend
    should size itself to, e.g. vLLM's tensor_parallel_size."""
    env = os.environ if env is None else env
    if env.get("CUDA_VISIBLE_DEVICES") is None:
        return len(_nvidia_smi_devices())
    return len(machine_devices({"CUDA_VISIBLE_DEVICES": env["CUDA_VISIBLE_DEVICES"]})[0])


def check_gpu_requests(requests: dict[str, int], granted: int | None) -> None:
    """Refuse a rule that asks for more GPUs than `--resources gpu=N` grants.

    Snakemake lowers such a job's `gpu` to N without a word, so a train_model configured
    for 8 GPUs would quietly run 2-way on a `--resources gpu=2` box (and vLLM would size
    its tensor parallelism to match). `granted` is None when the run sets no gpu limit.
    """
    if granted is None:
        return
    over = {rule: n for rule, n in requests.items() if n > granted}
    if over:
        rules = ", ".join(f"{rule} asks for gpu={n}" for rule, n in sorted(over.items()))
        raise SoftError(f"{rules}, but the run was started with --resources gpu={granted} "
                        f"(Snakemake would silently run it with {granted}); lower "
                        f"resources.<rule>.gpu in the config or raise --resources gpu")
