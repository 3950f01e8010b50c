"""The committed Slurm profile on a real Slurm: a one-node cluster started on this machine (slurmctld, slurmd, munge;
no accounting database, so the executor plugin asks squeue for job states) runs the smoke run's notebooks 01 and 02
as Slurm jobs, and their numbers are the goldens', bit for bit: a job on a node computes what a local run does.

Needs Debian's slurm-wlm and munge, and root (slurmd starts jobs as their user). Missing, the test is skipped, unless
INVERSE_VAE_REQUIRE_SLURM=1 (.ci/run sets it after installing them), where it fails instead.
"""
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from golden_metrics import differences

ROOT = Path(__file__).resolve().parents[2]
GOLDENS = ROOT / "tests" / "goldens" / "metrics"
SNAKEMAKE = ROOT / ".venv" / "bin" / "snakemake"
CONF = Path("/etc/slurm/slurm.conf")  # where srun inside a job looks: the plugin clears SLURM_CONF for it
OURS = "# a one-node test cluster of tests/runs/test_slurm.py (removed when the test ends)\n"


def _missing() -> str | None:
    absent = [tool for tool in ("slurmctld", "slurmd", "munged", "sbatch", "squeue") if shutil.which(tool) is None]
    if absent:
        return f"Slurm is not installed ({', '.join(absent)} missing: apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "a one-node Slurm needs root (slurmd starts each job as its user)"
    if CONF.exists() and not CONF.read_text().startswith(OURS):
        return f"{CONF} belongs to a real Slurm installation: the test will not replace it"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _conf(tmp: Path) -> str:
    node = socket.gethostname().split(".")[0]
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 * 8 // 10
    return OURS + "\n".join([
        "ClusterName=inversevae", f"SlurmctldHost={node}", "SlurmUser=root",
        "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={tmp}/munge.sock",
        f"StateSaveLocation={tmp}/state", f"SlurmdSpoolDir={tmp}/spool",
        f"SlurmctldPidFile={tmp}/slurmctld.pid", f"SlurmdPidFile={tmp}/slurmd.pid",
        f"SlurmctldLogFile={tmp}/slurmctld.log", f"SlurmdLogFile={tmp}/slurmd.log",
        f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
        # no cgroups in a container: plain process tracking; no accounting database: squeue keeps finished jobs an hour
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none", "MinJobAge=3600", "ReturnToService=2",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory",
        f"NodeName={node} CPUs={os.cpu_count()} RealMemory={memory} State=UNKNOWN",
        f"PartitionName=local Nodes={node} Default=YES MaxTime=INFINITE State=UP",
    ]) + "\n"


@contextlib.contextmanager
def _one_node_slurm(tmp: Path):
    for folder in ("state", "spool"):
        (tmp / folder).mkdir(parents=True)
    key = tmp / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    CONF.parent.mkdir(parents=True, exist_ok=True)
    CONF.write_text(_conf(tmp))
    pids = [tmp / name for name in ("slurmd.pid", "slurmctld.pid", "munged.pid")]
    try:
        subprocess.run(["munged", f"--key-file={key}", f"--socket={tmp}/munge.sock", f"--pid-file={tmp}/munged.pid",
                        f"--log-file={tmp}/munged.log", f"--seed-file={tmp}/munge.seed", "--force"], check=True)
        subprocess.run(["slurmctld", "-c"], check=True)
        subprocess.run(["slurmd"], check=True)
        for _ in range(60):
            state = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True).stdout.strip()
            if state == "idle":
                break
            time.sleep(1)
        else:
            pytest.fail(f"the one-node Slurm did not come up (sinfo says {state!r}); logs in {tmp}")
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
                os.kill(int(pid.read_text()), signal.SIGTERM)
        CONF.unlink(missing_ok=True)


@pytest.mark.slow
def test_the_smoke_runs_notebooks_as_jobs_of_a_real_slurm_give_the_goldens_numbers(tmp_path):
    why = _missing()
    if why:
        if os.environ.get("INVERSE_VAE_REQUIRE_SLURM") == "1":
            pytest.fail(why)
        pytest.skip(why)
    reports = tmp_path / "reports"
    env = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("SLURM_CONF", None)
    with _one_node_slurm(tmp_path / "slurm"):
        slurm = ["--slurm-status-command", "squeue", "--slurm-logdir", str(tmp_path / "slurm-logs"),
                 "--slurm-init-seconds-before-status-checks", "5", "--seconds-between-status-checks", "5"]
        done = subprocess.run([str(SNAKEMAKE), "--profile", "profiles/slurm", *slurm, "--config", "runs=params/smoke.yaml",
                               f"reports={reports}", "--", str(reports / ".receipts" / "smoke" / "02_evaluate.done")],
                              cwd=ROOT, capture_output=True, text=True, timeout=1500, env=env)
        said = done.stdout + done.stderr
        assert done.returncode == 0, said[-3000:]
        jobs = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%k %T %C %m %l"], capture_output=True, text=True).stdout
    # two notebook jobs ran on Slurm, each asking what workflow/resources.yaml gives its notebook: its memory (with the
    # plugin's 20% margin at most) and its minutes, and the CPUs of its torch threads
    needs = yaml.safe_load((ROOT / "workflow" / "resources.yaml").read_text())
    asked = {comment.rsplit("smoke_", 1)[-1]: rest for comment, *rest in (line.split() for line in jobs.splitlines())}
    assert sorted(asked) == ["01_train", "02_evaluate"], jobs
    for stem, (state, cpus, memory, limit) in asked.items():
        hours, minutes, _ = (["0"] * 3 + limit.split(":"))[-3:]
        assert state == "COMPLETED" and cpus == "2", jobs
        assert needs[stem]["mem_mb"] <= int(memory.rstrip("M")) <= 1.25 * needs[stem]["mem_mb"], jobs
        assert 60 * int(hours) + int(minutes) == needs[stem]["runtime"], jobs
    for notebook in ("01_train", "02_evaluate"):
        golden = json.loads((GOLDENS / f"{notebook}.json").read_text())
        fresh = json.loads((reports / "smoke" / "metrics" / f"{notebook}.json").read_text())
        assert fresh["arithmetic"]["pinned"], fresh["arithmetic"]
        assert differences(golden, fresh, exact=True) == [], notebook
