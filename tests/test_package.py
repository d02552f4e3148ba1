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
    for command in ("demo", "example", "evaluate", "nnunet"):
        assert command in out.stdout
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
    with pytest.raises(AttributeError, match="has no attribute"):
        getattr(mod, "DefinitelyNotAName")


@pytest.mark.parametrize("sub", SUBPACKAGES + ["evaluation"])
def test_no_public_name_is_shadowed_by_a_submodule(sub):
    # importing a submodule sets it as an attribute of its package, which would hide a lazy name of the same name
    import pkgutil

    mod = importlib.import_module(f"medloss.{sub}")
    modules = {m.name for m in pkgutil.iter_modules(mod.__path__)}
    assert not modules & set(mod.__all__), f"medloss.{sub}: names shadowed by submodules {modules & set(mod.__all__)}"


def test_medloss_never_imports_torchvision_timm_or_nnunet_at_import():
    # MONAI imports torchvision by itself when it is installed; medloss must work without it (a CPU-only torch with
    # a mismatched torchvision makes `import torchvision` raise), so both are made unimportable here
    code = (
        "import sys, importlib\n"
        "sys.modules['torchvision'] = None\n"
        "sys.modules['timm'] = None\n"
        f"for sub in {SUBPACKAGES + ['evaluation']!r}:\n"
        "    m = importlib.import_module('medloss.' + sub)\n"
        "    [getattr(m, n) for n in m.__all__]\n"
        "import medloss.cli, medloss.nnunet\n"
        "from medloss.losses import JaccardMetricLoss\n"
        "import torch\n"
        "JaccardMetricLoss(softmax=True)(torch.randn(1, 2, 8, 8), torch.softmax(torch.randn(1, 2, 8, 8), 1))\n"
        "print('nnunetv2' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "False", "importing medloss imported nnunetv2"


def test_no_medloss_module_imports_torchvision_or_timm():
    import ast

    for path in (ROOT / "medloss").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.split(".")[0] in ("torchvision", "timm") for n in names), f"{path} imports {names}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci_lines = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln and not ln.startswith("#")]
    # the first command that runs pytest is the README's test command (the wheel check comes after it)
    test_command = next(ln.strip() for ln in ci_lines if re.search(r"-m pytest", ln))
    test_command = re.sub(r"\s*\|\s*tee \S+$", "", test_command)  # its output is also kept in a log
    assert test_command.startswith("python3 -m venv .venv && .venv/bin/pip install -e "), test_command
    assert test_command in readme, "the test command of .ci/run must appear verbatim in README.md"


def test_example_command_runs_every_loss():
    out = run_cli("example", "--size", "24")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "every loss ranks the good prediction better" in out.stdout
    for name in ("JaccardMetricLoss", "SAUNALoss", "MIPLoss", "BettiMatchingLoss", "FairErrorBoundScalingLoss",
                 "SinkhornDistanceLoss", "EnergyDistanceLoss", "IMPACTLoss"):
        assert name in out.stdout
