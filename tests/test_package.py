"""Package-level contract: the command, lazy public names, no torchvision/timm/nnunetv2 on import, CI = README."""

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import medloss

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ["losses", "transforms", "metrics", "topology", "networks"]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "medloss", *args], capture_output=True, text=True, timeout=300)


def test_version_and_help():
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"medloss {medloss.__version__}"
    out = run_cli("--help")
    assert out.returncode == 0
    assert "example" in out.stdout
    # no subcommand prints the help and succeeds
    assert run_cli().returncode == 0


def test_console_script_installed():
    exe = Path(sys.executable).parent / "medloss"
    assert exe.exists(), "the `medloss` console script is not installed next to the interpreter"
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and medloss.__version__ in out.stdout


@pytest.mark.parametrize("sub", SUBPACKAGES)
def test_every_public_name_resolves(sub):
    mod = importlib.import_module(f"medloss.{sub}")
    assert mod.__all__, f"medloss.{sub} exports nothing"
    for name in mod.__all__:
        assert getattr(mod, name) is not None
    with pytest.raises(AttributeError, match="no attribute"):
        getattr(mod, "DefinitelyNotAName")


def test_import_pulls_no_torchvision_timm_or_nnunet():
    code = (
        "import sys, importlib\n"
        f"for sub in {SUBPACKAGES!r}:\n"
        "    m = importlib.import_module('medloss.' + sub)\n"
        "    [getattr(m, n) for n in m.__all__]\n"
        "import medloss.cli\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('torchvision', 'timm', 'nnunetv2'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"importing medloss imported {out.stdout.strip()}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci_lines = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln and not ln.startswith("#")]
    test_command = ci_lines[-1].strip()
    assert test_command in readme, "the last command of .ci/run must appear verbatim in README.md"
    assert re.search(r"pytest", test_command)
