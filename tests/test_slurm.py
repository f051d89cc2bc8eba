"""The tiny pipeline through a real, private, single-node SLURM (`make test-slurm`).

Installs Debian's slurm-wlm and munge if missing, starts munged, slurmctld and slurmd as
root with every file (config, keys, sockets, state, logs, fake GPU device nodes) under a
temporary directory, runs the tiny end-to-end workflow with `--profile profiles/slurm`
(plus a few overrides for a 2-core test node), checks that every job went through
sbatch and that the GPU rules asked for GPUs and got CUDA_VISIBLE_DEVICES from SLURM,
then stops exactly the daemons it started. Nothing is written under /etc (beyond what
apt-get itself installs): clients and daemons find the config through SLURM_CONF (inside
jobs, through an `srun` shim on PATH) and munge through its socket path.

Every external command is bounded with `timeout -k`: the plugin's status loop, once it
hangs, ignores SIGTERM.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import snakemake
from tiny import digests
from tiny import tiny_config

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
GPU_RULES = ("generate_responses", "train_model", "evaluate_model")
DAEMONS = ("munged", "slurmctld", "slurmd")
# The plugin stops trusting squeue (and falls back to sacct, which hangs without
# slurmdbd) unless MinJobAge >= 3 x the first status-check delay.
STATUS_INIT_S = 3
# A finished job's record must also outlive the run, for the scontrol checks after it: the
# run took about 330 s alone, 541 s beside the rehearsal, and job 1's record was gone.
MIN_JOB_AGE_S = 3600


def sh(*cmd: str, timeout: int = 60, check: bool = True, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    """Run a command under `timeout -k 10` (a SIGKILL follows if SIGTERM is ignored)."""
    proc = subprocess.run(["timeout", "-k", "10", str(timeout), *cmd], capture_output=True, text=True,
                          env=env, timeout=timeout + 30, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def cannot_run(reason: str) -> None:
    """Skip where SLURM cannot be started; under CI (CI set, as .ci/run sets it) fail
    instead, so that a CI run never goes green without having run this test."""
    if os.environ.get("CI"):
        pytest.fail(f"the SLURM test cannot run under CI: {reason}")
    pytest.skip(reason)


def ensure_slurm_installed() -> None:
    if all(shutil.which(d) for d in DAEMONS) and shutil.which("sbatch") and shutil.which("mungekey"):
        return
    if shutil.which("apt-get") is None:
        cannot_run("slurm-wlm and munge are not installed and apt-get is not available to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    sh("apt-get", "update", "-qq", timeout=300, env=env)
    sh("apt-get", "install", "-y", "-qq", "--no-install-recommends", "slurm-wlm", "munge", timeout=600, env=env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_line(host: str, gres: str) -> str:
    """This machine's NodeName line as `slurmd -C` reports it, plus fake GPUs."""
    out = sh("slurmd", "-C").stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("NodeName="))
    line = re.sub(r"^NodeName=\S+", f"NodeName={host}", line)
    return f"{line} Gres={gres} State=UNKNOWN"


def write_cluster_config(root: Path, host: str) -> Path:
    for d in ("state", "spool", "log", "dev"):
        (root / d).mkdir(parents=True, exist_ok=True)
    # Fake GPUs: SLURM wants character devices (plain files leave CUDA_VISIBLE_DEVICES
    # empty); 1,3 is /dev/null's major/minor, harmless to open.
    for i in range(2):
        dev = root / "dev" / f"nvidia{i}"
        if not dev.exists():
            os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 3))
    (root / "gres.conf").write_text(
        "AutoDetect=off\n"
        f"NodeName={host} Name=gpu Type=a100 File={root}/dev/nvidia[0-1]\n")
    (root / "plugstack.conf").write_text("")  # not /etc/slurm/plugstack.conf
    conf = root / "slurm.conf"
    conf.write_text(f"""\
ClusterName=softtest
SlurmctldHost={host}
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.sock
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
PlugStackConfig={root}/plugstack.conf
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge={MIN_JOB_AGE_S}
GresTypes=gpu
{node_line(host, "gpu:a100:2")}
PartitionName=soft_test Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
    return conf


class Cluster:
    """munged + slurmctld + slurmd in the foreground, each a child we can stop by pid."""

    def __init__(self, root: Path):
        self.root = root
        self.host = socket.gethostname().split(".")[0]
        self.procs: dict[str, subprocess.Popen] = {}
        self.conf = write_cluster_config(root, self.host)
        self.env = {**os.environ, "SLURM_CONF": str(self.conf),
                    "PATH": f"{self._srun_shim()}:{os.environ['PATH']}"}
        for var in list(self.env):  # a SLURM job around the test must not leak in
            if var.startswith(("SLURM_", "SBATCH_", "SRUN_")) and var != "SLURM_CONF":
                del self.env[var]

    def _srun_shim(self) -> Path:
        """An `srun` that puts SLURM_CONF back.

        Inside each job the plugin's jobstep drops every SLURM_* variable but the job's
        ids before it calls `srun`, SLURM_CONF included. A real cluster keeps its config
        in /etc/slurm (or serves it configless); this one has it only in SLURM_CONF, and
        writing /etc is not an option (see the module docstring).
        """
        bin_dir = self.root / "bin"
        bin_dir.mkdir(exist_ok=True)
        shim = bin_dir / "srun"
        shim.write_text(f"#!/bin/sh\nSLURM_CONF={self.conf} exec {shutil.which('srun')} \"$@\"\n")
        shim.chmod(0o755)
        return bin_dir

    def _spawn(self, name: str, *cmd: str) -> None:
        log = open(self.root / "log" / f"{name}.out", "w")
        self.procs[name] = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                            start_new_session=True)
        log.close()

    def start(self) -> None:
        munge = self.root / "munge"
        munge.mkdir(mode=0o711, exist_ok=True)
        key = munge / "munge.key"
        if not key.exists():  # our own key: /etc/munge is left alone
            sh("mungekey", "--create", f"--keyfile={key}")
        self._spawn("munged", "munged", "--foreground", "--force", f"--key-file={key}",
                    f"--socket={munge}/munge.sock", f"--pid-file={munge}/munged.pid",
                    f"--log-file={munge}/munged.log", f"--seed-file={munge}/munged.seed")
        self._wait(lambda: (munge / "munge.sock").exists(), 30, "munged socket")
        self._spawn("slurmctld", "slurmctld", "-D", "-c", "-f", str(self.conf))
        self._wait(lambda: self.run("scontrol", "ping", check=False).returncode == 0, 60, "slurmctld")
        self._spawn("slurmd", "slurmd", "-D", "-f", str(self.conf), "-N", self.host)
        self._wait(lambda: self.run("sinfo", "-h", "-N", "-o", "%t", check=False).stdout.strip() == "idle",
                   90, "node idle")

    def run(self, *cmd: str, timeout: int = 30, check: bool = True) -> subprocess.CompletedProcess:
        return sh(*cmd, timeout=timeout, check=check, env=self.env)

    def _wait(self, ready, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                raise AssertionError(f"{dead} exited while waiting for {what}:\n{self.logs()}")
            if ready():
                return
            time.sleep(0.5)
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}:\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted((self.root / "log").glob("*"))
                         if p.is_file())

    def stop(self) -> None:
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            # Jobs left by a failed run: cancel them and let their steps end before
            # slurmd goes (its slurmstepd processes would otherwise outlive it).
            self.run("scancel", "--full", "--partition=soft_test", check=False)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.run("squeue", "-h", "-t", "RUNNING,PENDING,COMPLETING",
                                                           check=False).stdout.strip():
                time.sleep(1)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if os.geteuid() != 0:
        cannot_run("starting slurmctld/slurmd needs root")
    ensure_slurm_installed()
    root = tmp_path_factory.mktemp("slurm")
    etc_conf = Path("/etc/slurm/slurm.conf")
    had_etc_conf = etc_conf.exists()
    c = Cluster(root)
    try:
        c.start()
        yield c
    finally:
        c.stop()
        # Unix sockets and device nodes are no use to anyone once the daemons are gone.
        shutil.rmtree(root / "dev", ignore_errors=True)
        shutil.rmtree(root / "munge", ignore_errors=True)
    # A stray /etc/slurm/slurm.conf with no controller behind it slows every later
    # Snakemake run on the machine (the plugin queries it at import).
    assert etc_conf.exists() == had_etc_conf


def make_test_profile(tmp_path: Path) -> Path:
    """profiles/slurm with the overrides a 2-core, 2-fake-GPU test node needs."""
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    profile.update({
        "jobs": 4,
        "latency-wait": 5,
        "retries": 0,
        "slurm-init-seconds-before-status-checks": STATUS_INIT_S,
        "default-resources": {"slurm_partition": "soft_test", "runtime": 10, "mem_mb": 1000},
        "set-threads": {r: 1 for r in GPU_RULES},
    })
    for rule in GPU_RULES:
        profile["set-resources"][rule].update(mem_mb=1500, runtime=10)
    # One rule names the GPU model, as on a cluster with several kinds: --gpus=a100:1.
    profile["set-resources"]["train_model"]["gpu_model"] = "a100"
    out = tmp_path / "profile"
    out.mkdir()
    (out / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return out


def scontrol_job(cluster: Cluster, job_id: str) -> dict:
    out = cluster.run("scontrol", "show", "job", "-o", job_id).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


def test_tiny_pipeline_runs_through_slurm(cluster, tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    resources = {r: {"threads": 1, "mem_mb": 1000, "gpu": 1 if r in GPU_RULES else 0}
                 for r in ("prepare_base_model", "generate_responses", "train_model", "evaluate_model")}
    cfg = tiny_config(workdir, experiments={"soft": {"rounds": 1}}, resources=resources)
    profile = make_test_profile(tmp_path)
    # The model rules' runtime and mem_mb from the cost forecast of this very run (device
    # profile cpu-here: the test node is this machine), replacing the profile's fixed ones.
    from soft.tools import forecast

    static = yaml.safe_load((profile / "config.yaml").read_text())
    rows = forecast.forecast_jobs(forecast.plan_jobs(workdir, cfg), forecast.load_setting(workdir, cfg), "cpu-here",
                                  keep_fraction=1.0)
    # wide time margins (this 2-core node is shared with the test suite), memory x 2
    limits = forecast.slurm_limits(rows, safety=10.0, min_runtime_min=1, mem_safety=2.0)
    (profile / "config.yaml").write_text(yaml.safe_dump(forecast.slurm_profile(static, limits), sort_keys=False))
    started = time.monotonic()
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(cfg), "--profile", str(profile), "--verbose"]
    # About 330 s alone, most of it the plugin's status polling; CI runs this test beside
    # the embedded default (.ci/run), which slows its jobs: a wide bound.
    proc = sh(*cmd, timeout=900, check=False, env=cluster.env, cwd=workdir)
    elapsed = time.monotonic() - started
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"snakemake failed ({proc.returncode}) after {elapsed:.0f} s:\n{out[-6000:]}\n{cluster.logs()}"
    assert (workdir / "results/tables/metrics.csv").is_file()

    # Every job was an sbatch submission with its own SLURM job id.
    submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", out))
    assert len(submitted) >= 7, out[-4000:]
    jobs = {jid: scontrol_job(cluster, jid) for jid in submitted.values()}
    by_rule: dict[str, list[dict]] = {}
    for info in jobs.values():
        assert info["JobState"] == "COMPLETED", info
        by_rule.setdefault(re.match(r"rule_(\w+?)(?:_wildcards_|$)", info["Comment"]).group(1), []).append(info)
    assert set(GPU_RULES) <= set(by_rule), by_rule.keys()
    # the downloads are local rules: they ran where Snakemake runs, never through sbatch
    assert not {"prepare_base_model", "fetch_benchmarks"} & set(by_rule), by_rule.keys()

    # Each model job was submitted with its rule's forecast-derived limits: the tiny jobs'
    # forecasts are short, so their limits are short (not the shipped profile's hours).
    shipped = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    for rule in GPU_RULES:
        assert limits[rule]["runtime"] < shipped["set-resources"][rule]["runtime"], (rule, limits[rule])
        for info in by_rule[rule]:
            h, m, sec = (int(x) for x in info["TimeLimit"].split(":")[-3:])
            assert h * 60 + m + sec / 60 == limits[rule]["runtime"], (rule, info["TimeLimit"], limits[rule])
            assert info["MinMemoryNode"] in (f"{limits[rule]['mem_mb']}M",
                                             f"{limits[rule]['mem_mb'] / 1024:g}G"), (rule, info, limits[rule])

    # GPU rules asked SLURM for GPUs (--gpus, with the model where the profile names one),
    # and SLURM, not the local allocator, set their CUDA_VISIBLE_DEVICES.
    for rule, infos in by_rule.items():
        for info in infos:
            tres = info.get("TresPerJob", "")
            if rule in GPU_RULES:
                assert tres == ("gres:gpu:a100:1" if rule == "train_model" else "gres:gpu:1"), (rule, info)
            else:
                assert "gpu" not in tres, (rule, info)
    sbatch_calls = re.findall(r"sbatch call: (sbatch .*)", out)
    assert any("--gpus=a100:1" in c for c in sbatch_calls) and any(re.search(r"--gpus=1\b", c) for c in sbatch_calls)
    gpu_logs = [p for p in (workdir / "logs").rglob("*.log") if p.parent.name in GPU_RULES]
    assert {p.parent.name for p in gpu_logs} == set(GPU_RULES)
    for log in gpu_logs:
        text = log.read_text()
        m = re.search(r"SLURM job (\d+): GPUs chosen by the scheduler \(CUDA_VISIBLE_DEVICES=([^)]*)\)", text)
        assert m, f"{log}:\n{text[-2000:]}"
        assert re.fullmatch(r"[01]", m.group(2)), f"{log}: CUDA_VISIBLE_DEVICES={m.group(2)!r}"
    # The plugin's per-job SLURM logs (kept by the profile) are where a failed job's
    # scheduler-side output would be.
    slurm_logs = list((workdir / ".snakemake/slurm_logs").rglob("*.log"))
    assert {p.parts[p.parts.index("slurm_logs") + 1] for p in slurm_logs} >= {f"rule_{r}" for r in GPU_RULES}

    # The same config run locally, without SLURM or GPU requests, writes the same files,
    # byte for byte: every file under results/ and resources/ (test_determinism.digests).
    local = tmp_path / "local"
    local.mkdir()
    snakemake(local, tiny_config(local, experiments={"soft": {"rounds": 1}}))
    through_slurm, here = digests(workdir), digests(local)
    assert through_slurm.keys() == here.keys() and len(here) > 15
    assert not [name for name in here if here[name] != through_slurm[name]], "SLURM and local runs differ"
    print(f"\nSLURM pipeline: {len(submitted)} jobs in {elapsed:.0f} s")
