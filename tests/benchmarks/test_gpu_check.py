"""benchmarks/gpu_check.sh: one clear line without CUDA, its argument errors, the time budget, and its stages run
end to end on the CPU (``--cpu-dry-run``) with a summary and a log."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
STAGES = ["environment", "pytest -m cuda", "losses.py --shape 2 2 12 12 12", "losses.py --shape 4 2 32 32",
          "losses.py --shape 2 2 16 16 16", "training_step.py"]

pytestmark = pytest.mark.slow  # commands in a subprocess


def _run(*args, timeout=600, **env):
    environ = {k: v for k, v in os.environ.items() if k != "OUT"}
    environ.update(PYTHON=sys.executable, **env)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=environ,
                          timeout=timeout, cwd=ROOT)


def _summary(stdout):
    """{stage: (status, seconds)} of the closing table."""
    table = stdout.split("=== summary", 1)[1].splitlines()[2:]
    rows = {}
    for line in table:
        match = re.match(r"(.+?)\s{2,}(passed|timed out|failed \(exit \d+\)|skipped \([^)]*\))\s+(\S+)$", line)
        if match:
            rows[match[1]] = (match[2], match[3])
    return rows


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_without_cuda_one_line_and_exit_1(tmp_path):
    result = _run(OUT=str(tmp_path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("gpu_check: no CUDA device: torch ") and "--cpu-dry-run" in result.stderr
    assert not any(tmp_path.iterdir())  # no log of a run that did not start


@pytest.mark.parametrize("args, fragment", [(["--bogus"], "unknown argument '--bogus'"),
                                            (["--budget", "soon"], "--budget must be a whole number")])
def test_bad_arguments(args, fragment):
    result = _run(*args)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("gpu_check: error:")
    assert fragment in result.stderr


def test_spent_budget_skips_every_stage(tmp_path):
    log = tmp_path / "check.log"
    result = _run("--cpu-dry-run", "--budget", "0", "--log", str(log))
    assert result.returncode == 1
    rows = _summary(result.stdout)
    assert list(rows) == STAGES
    assert all(status == "skipped (budget spent)" for status, _ in rows.values())
    assert log.read_text() == result.stdout
    assert result.stdout.splitlines()[-1] == f"gpu_check: {len(STAGES)} stage(s) did not pass"


def test_cpu_dry_run_runs_every_stage(tmp_path):
    result = _run("--cpu-dry-run", OUT=str(tmp_path))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = _summary(result.stdout)
    assert list(rows) == STAGES
    assert all(status == "passed" for status, _ in rows.values()), rows
    assert result.stdout.splitlines()[-1] == "gpu_check: all stages passed"
    assert (tmp_path / "gpu_check.log").read_text() == result.stdout  # the log under $OUT holds the whole output
    # the cuda tests were collected (and skipped here) and every loss benchmark line has its ratio to DiceLoss
    assert re.search(r"\d+ skipped", result.stdout) and "no tests ran" not in result.stdout
    ratios = re.findall(r"^(\w+).*\s[\d.]+x DiceLoss$", result.stdout, flags=re.M)
    assert len(ratios) == 3 * 17 and ratios.count("BettiMatchingLoss") == 3
    assert "| 16x16x16 (B=2) | + 0.5 Betti |" in result.stdout
