"""Run a function on a 2-process ``torch.distributed`` (gloo, CPU) group, for the tests of batch-pooled losses.

Usage in a test::

    results = run_on_ranks('''
    def run(rank, world, folder):
        import torch
        ...
        return {"value": ...}          # JSON-serialisable
    ''', tmp_path)
    results[0], results[1]             # what each rank returned

The function is written to a script in ``folder`` and started with ``torch.multiprocessing.spawn``; the process
group is initialised before ``run`` and destroyed after it. Each process uses one thread (``OMP_NUM_THREADS=1``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import List

__all__ = ["run_on_ranks"]

_LAUNCHER = '''
import json, os, sys
import torch.multiprocessing as mp  # the parent only spawns; torch.distributed is set up in the workers


def _worker(rank, world, port, folder):
    import torch.distributed as dist

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    result = run(rank, world, folder)
    with open(os.path.join(folder, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    port, folder, world = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    mp.spawn(_worker, args=(world, port, folder), nprocs=world, join=True)
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_on_ranks(run_source: str, folder, world: int = 2, timeout: float = 600) -> List[dict]:
    """Run ``run(rank, world, folder)`` (defined in ``run_source``) on ``world`` ranks; return each rank's result.

    Raises:
        AssertionError: a process failed (its stderr is in the message).
    """
    folder = Path(folder)
    script = folder / "ranks_script.py"
    script.write_text(textwrap.dedent(run_source) + "\n" + _LAUNCHER)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(script), str(_free_port()), str(folder), str(world)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in range(world)]
