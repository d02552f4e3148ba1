"""``medloss demo`` and ``medloss example`` as a careless user runs them: every mistake ends with one line.

Each bad call runs the real command line in a subprocess and must end with a non-zero status, one stderr line
``medloss <command>: error: ...`` naming the option or file, no traceback, and the disk as it was (the subprocess's
temporary folder lies inside the checked folder, so a leftover there is seen too). The mistakes are found while the
options are checked, before any training: these calls take about a second each.
"""

import os
import subprocess
import sys

import pytest
import torch

from medloss.data import write_synthetic_dataset


def _run(command, *args, cwd):
    env = {**os.environ, "TMPDIR": str(cwd / "tmp")}
    return subprocess.run([sys.executable, "-m", "medloss", command, *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env=env)


def _snapshot(root):
    """Every path under ``root`` with the content of its files."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def _assert_clean_error(result, command, *expected):
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"medloss {command}: error: "), result.stderr
    for text in expected:
        assert text in lines[0], (text, lines[0])


@pytest.fixture
def workdir(tmp_path):
    """A working folder with a previous demo report, a plain file, a dataset and an empty temporary folder."""
    (tmp_path / "tmp").mkdir()
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "report.md").write_text("previous report")
    (tmp_path / "notes.txt").write_text("a file")
    write_synthetic_dataset(tmp_path / "data", n_cases=3, size=8, seed=0)
    return tmp_path


NO_CUDA = "cuda" if not torch.cuda.is_available() else "cuda:99"  # a device that this machine does not have

DEMO_MISTAKES = {
    "device_bogus": (["--device", "bogus"], ["--device 'bogus'", "expected cpu, cuda"]),
    "device_unavailable": (["--device", NO_CUDA], [f"--device {NO_CUDA!r}"]),
    "device_index": (["--device", "cuda:99"], ["--device 'cuda:99'"]),
    "size_too_small": (["--size", "3"], ["--size", ">= 16", "got 3"]),
    "seed_negative": (["--seed", "-1"], ["--seed", ">= 0", "got -1"]),
    "threads_negative": (["--threads", "-1"], ["--threads", ">= 1", "got -1"]),
    "threads_zero": (["--threads", "0"], ["--threads", "got 0"]),
    "iterations_zero": (["--iterations", "0"], ["--iterations"]),
    "patch_not_multiple": (["--patch", "18"], ["--patch", "multiple of 4"]),
    "patch_over_size": (["--size", "16", "--patch", "32"], ["--patch (32)", "--size (16)"]),
    "lr_nan": (["--lr", "nan"], ["--lr", "finite"]),
    "weight_inf": (["--betti-weight", "inf"], ["--betti-weight", "finite"]),
    "betti_fraction": (["--betti-fraction", "0"], ["--betti-fraction", "(0, 1]"]),
    "too_many_phantoms": (["--cases", "500"], ["--cases + --test-cases", "500"]),
    "unknown_loss": (["--losses", "dice"], ["--losses", "dice"]),
    "output_is_file": (["--output", "notes.txt"], ["--output", "notes.txt", "is a file"]),
    "output_under_file": (["--output", "notes.txt/out"], ["--output", "does not exist"]),
    "output_parent_missing": (["--output", "missing/out"], ["--output", "does not exist"]),
    "data_missing": (["--data", "missing"], ["--data 'missing'", "does not exist"]),
    "data_is_file": (["--data", "notes.txt"], ["--data 'notes.txt'", "not a folder"]),
    "data_without_layout": (["--data", "tmp"], ["--data 'tmp'", "imagesTr/ and labelsTr/"]),
}


@pytest.mark.parametrize("case", list(DEMO_MISTAKES))
def test_demo_refuses_a_mistake_before_any_work(workdir, case):
    args, expected = DEMO_MISTAKES[case]
    before = _snapshot(workdir)
    result = _run("demo", "--output", "report", "--iterations", "1", *args, cwd=workdir)
    _assert_clean_error(result, "demo", *expected)
    assert _snapshot(workdir) == before


@pytest.mark.parametrize("where", ["imagesTr/vessel_tr001_0000.nii.gz", "labelsTr/vessel_tr002.nii.gz"])
@pytest.mark.parametrize("damage", ["truncated", "not_gzip", "empty"])
def test_demo_names_a_corrupt_data_file(workdir, where, damage):
    bad = workdir / "data" / where
    data = bad.read_bytes()
    bad.write_bytes({"truncated": data[: len(data) // 2], "not_gzip": b"not a volume" * 20, "empty": b""}[damage])
    before = _snapshot(workdir)
    result = _run("demo", "--data", "data", "--output", "report", "--iterations", "1", cwd=workdir)
    _assert_clean_error(result, "demo", f"cannot read {os.path.join('data', where)}")
    assert _snapshot(workdir) == before


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write into read-only folders")
@pytest.mark.parametrize("output", ["report", "locked/new"])
def test_demo_refuses_a_read_only_output(workdir, output):
    locked = workdir / output.split("/")[0]
    locked.mkdir(exist_ok=True)
    locked.chmod(0o555)
    try:
        before = _snapshot(workdir)
        result = _run("demo", "--output", output, "--iterations", "1", cwd=workdir)
        _assert_clean_error(result, "demo", "--output", "permission denied")
        assert _snapshot(workdir) == before
    finally:
        locked.chmod(0o755)


def test_debug_shows_the_traceback(workdir):
    result = _run("demo", "--seed", "-1", "--debug", cwd=workdir)
    assert result.returncode != 0 and "Traceback" in result.stderr and "ValueError: --seed" in result.stderr


EXAMPLE_MISTAKES = {
    "size_too_small": (["--size", "3"], ["--size", ">= 8", "got 3"]),
    "seed_negative": (["--seed", "-1"], ["--seed", "got -1"]),
    "device_bogus": (["--device", "bogus"], ["--device 'bogus'"]),
    "device_unavailable": (["--device", NO_CUDA], [f"--device {NO_CUDA!r}"]),
}


@pytest.mark.parametrize("case", list(EXAMPLE_MISTAKES))
def test_example_refuses_a_mistake(workdir, case):
    args, expected = EXAMPLE_MISTAKES[case]
    before = _snapshot(workdir)
    result = _run("example", *args, cwd=workdir)
    _assert_clean_error(result, "example", *expected)
    assert result.stdout == ""  # refused before the header is printed
    assert _snapshot(workdir) == before


def test_demo_short_run_moves_the_report_into_place(workdir):
    # the smallest, fastest run; the previous report folder keeps the user's other files
    (workdir / "report" / "mine.txt").write_text("kept")
    result = _run("demo", "--output", "report", "--size", "16", "--patch", "16", "--iterations", "1",
                  "--batch-size", "1", "--cases", "1", "--test-cases", "1", "--losses", "baseline", "--no-progress",
                  cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    report = workdir / "report"
    assert sorted(p.name for p in report.iterdir()) == ["metrics.json", "metrics_bar.png", "mine.txt",
                                                        "mip_phantom_001.png", "report.md"]
    assert (report / "report.md").read_text().startswith("# medloss demo report")
    assert (report / "mine.txt").read_text() == "kept"
    assert not list(workdir.glob("*.medloss-tmp")) and not list(workdir.glob(".*medloss*"))
    # the phantoms were written to a temporary folder and removed (torch may leave its own caches there)
    assert [p.name for p in (workdir / "tmp").iterdir() if "medloss" in p.name] == []
