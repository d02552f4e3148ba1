"""Type checkers see medloss's lazy public names: mypy on a user script reports no error of medloss's making."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

USER_SCRIPT = """
    import numpy as np
    import torch

    from medloss.losses import (BettiMatchingLoss, DiceSemimetricLoss, FocalTverskyLoss, JaccardMetricLoss, MIPLoss,
                                SAUNALoss)
    from medloss.metrics import (BettiMatchingErrorMetric, betti_matching_error, betti_number_error, cldice,
                                 dice, equity_scaled_metric)
    from medloss.topology import betti_matching, betti_numbers
    from medloss.transforms import LabelMIPd, SAUNATransform, sauna_to_label

    x = torch.rand(2, 2, 16, 16, requires_grad=True)
    y = (torch.rand(2, 2, 16, 16) > 0.5).float()
    total: torch.Tensor = JaccardMetricLoss()(x, y) + DiceSemimetricLoss()(x, y) + FocalTverskyLoss()(x, y)
    total = total + MIPLoss(axes=0)(x, y) + BettiMatchingLoss()(x, y) + SAUNALoss()(x, y)
    total.backward()

    errors = betti_matching_error(x.detach().numpy(), y.numpy())
    per_dim: np.ndarray = errors.per_dim
    b = betti_number_error(x.detach().numpy(), y.numpy()).total
    c: float = float(cldice(x.detach().numpy()[0, 0] > 0.5, y.numpy()[0, 0] > 0.5))
    d = dice(x.detach().numpy()[0, 0] > 0.5, y.numpy()[0, 0] > 0.5)
    metric = BettiMatchingErrorMetric()
    metric(y_pred=x.detach(), y=y)
    result = metric.aggregate()
    betti: np.ndarray = betti_numbers(y.numpy()[0, 0] > 0)
    matching = betti_matching(x.detach().numpy()[0, 0], y.numpy()[0, 0])
    soft = SAUNATransform()(y[0])
    label = sauna_to_label(soft)
    es = equity_scaled_metric(np.array([0.5, 0.7]), np.array([0, 1]))
    mips = LabelMIPd(keys="label")
"""


@pytest.mark.slow
def test_mypy_sees_the_public_names(tmp_path):
    if shutil.which("mypy", path=os.path.dirname(sys.executable)) is None and \
            subprocess.run([sys.executable, "-m", "mypy", "--version"], capture_output=True).returncode != 0:
        pytest.fail("mypy is part of the test extra: pip install -e '.[test]'")
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent(USER_SCRIPT))
    # MYPYPATH points at the source tree: an editable install hides the package from mypy's module finder
    env = dict(os.environ, MYPYPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", "--no-error-summary", "--cache-dir",
         str(tmp_path / "cache"), str(script)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900,
    )
    assert out.returncode == 0, out.stdout + out.stderr
