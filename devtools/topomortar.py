"""A tiny fake TopoMortar checkout for the benchmark's tests (not part of the medloss wheel).

TopoMortar (Valverde et al., BMVC 2025, https://arxiv.org/abs/2503.03365, https://github.com/jmlipman/TopoMortar)
is a set of 512x512 photographs of brick walls with mortar labels. :func:`make_fake_topomortar` writes a few small
synthetic brick walls in the repository's layout, so that ``benchmarks/topomortar.py`` can be tested without the
real data: ``dataset/{train,val,test}/{images,accurate,noisy,pseudo}/NNN.png`` (RGB images, 0/255 labels),
``dataset/splits.yaml``, ``dataset/splits_small.yaml``, ``dataset/dataset_types.txt`` and one results tree
``results/supervised/accurate/large/<Loss>/<run>.csv`` in the paper's column format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

#: the paper's per-image result columns, in the order of its CSV files
RESULT_COLUMNS = (
    "Betti0ErrorLocal_mortar",
    "Betti0Error_mortar",
    "Betti1ErrorLocal_mortar",
    "Betti1Error_mortar",
    "Dice_mortar",
    "HD95_mortar",
    "clDice_mortar",
)


def brick_wall(size: int, seed: int) -> "tuple[np.ndarray, np.ndarray]":
    """One synthetic brick wall: an RGB uint8 image ``(size, size, 3)`` and its mortar label (uint8, 0/255).

    Bricks are ``h x 2h`` with ``h = size // 8`` (jittered), courses offset by half a brick, 2-pixel mortar joints.
    """
    rng = np.random.default_rng(seed)
    h = max(6, size // 8 + int(rng.integers(-1, 2)))
    mortar = np.zeros((size, size), bool)
    y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, 2 * h))
    for course, y in enumerate(range(y0 - h, size, h)):
        mortar[max(y, 0):max(y + 2, 0)] = True
        shift = (x0 + course * h) % (2 * h)  # courses offset by half a brick
        for x in range(shift - 2 * h, size, 2 * h):
            mortar[max(y, 0):max(min(y + h, size), 0), max(x, 0):max(x + 2, 0)] = True
    image = np.empty((size, size, 3), np.float64)
    image[...] = (170, 60, 45) + rng.normal(0, 12, 3)
    image[mortar] = (165, 160, 150)
    image += rng.normal(0, 10, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), (mortar * 255).astype(np.uint8)


def make_fake_topomortar(
    root: Union[str, Path],
    size: int = 64,
    train: Sequence[int] = (1, 2, 3, 4),
    val: Sequence[int] = (51,),
    test_id: Sequence[int] = (71, 72, 73),
    test_ood: Sequence[int] = (121,),
    runs: Optional[Dict[str, int]] = None,
) -> Path:
    """Write a fake TopoMortar checkout under ``root`` and return ``root``.

    Args:
        root: the folder to write (created).
        size: image side in pixels (a multiple of 16).
        train, val: image ids of the training and validation splits (with accurate, noisy and pseudo labels).
        test_id: in-distribution test ids (group ``indistr``; images and accurate labels are written).
        test_ood: out-of-distribution test ids: listed in the splits, ``dataset_types.txt`` (group ``angles``) and
            the result CSVs, but no image is written (as in a partial copy of the data).
        runs: ``{loss class name: number of runs}`` of the results tree; default ``{"CEDiceLoss": 2,
            "clDiceLoss": 1}``. Values are random but fixed; one run has an empty-prediction HD95 (9999999).
    """
    root = Path(root)
    runs = {"CEDiceLoss": 2, "clDiceLoss": 1} if runs is None else runs
    from PIL import Image

    def write(split: str, ids: Sequence[int], kinds: Sequence[str]) -> None:
        for i in ids:
            image, label = brick_wall(size, seed=i)
            for kind in ("images",) + tuple(kinds):
                folder = root / "dataset" / split / kind
                folder.mkdir(parents=True, exist_ok=True)
                if kind == "images":
                    Image.fromarray(image, "RGB").save(folder / f"{i:03d}.png")
                else:
                    lab = label.copy()
                    if kind == "noisy":  # thin strokes: erode the joints to one pixel
                        lab[:, 1:] &= label[:, :-1]
                    Image.fromarray(lab, "L").save(folder / f"{i:03d}.png")

    write("train", train, ("accurate", "noisy", "pseudo"))
    write("val", val, ("accurate", "noisy", "pseudo"))
    write("test", test_id, ("accurate",))

    def paths(split: str, ids: Sequence[int]) -> List[str]:
        return [f"dataset/{split}/images/{i:03d}.png" for i in ids]

    def splits_yaml(train_ids: Sequence[int]) -> str:
        lines = ["1:"]
        for key, split, ids in (("test", "test", list(test_id) + list(test_ood)), ("train", "train", train_ids),
                                ("val", "val", val)):
            lines.append(f"  {key}:")
            lines += [f"  - {p}" for p in paths(split, ids)]
        return "\n".join(lines) + "\n"

    (root / "dataset" / "splits.yaml").write_text(splits_yaml(train))
    (root / "dataset" / "splits_small.yaml").write_text(splits_yaml(list(train)[: max(1, len(train) // 2)]))
    rows = ["ID,group"] + [f"{i:03d},indistr" for i in (*train, *val, *test_id)]
    rows += [f"{i:03d},angles" for i in test_ood]
    (root / "dataset" / "dataset_types.txt").write_text("\n".join(rows) + "\n")

    rng = np.random.default_rng(1234)
    (root / "results" / "supervised" / "accurate" / "large").mkdir(parents=True, exist_ok=True)
    for loss, n in runs.items():
        folder = root / "results" / "supervised" / "accurate" / "large" / loss
        folder.mkdir(parents=True, exist_ok=True)
        for run in range(1, n + 1):
            lines = ["ID," + ",".join(RESULT_COLUMNS)]
            for k, i in enumerate((*test_id, *test_ood)):
                b0, b1 = int(rng.integers(0, 6)), int(rng.integers(0, 4))
                hd = 9999999 if (run == 1 and k == 1) else float(rng.uniform(1, 3))
                values = (rng.uniform(0, 1), b0, rng.uniform(0, 1), b1, rng.uniform(0.8, 0.95), hd,
                          rng.uniform(0.9, 1.0))
                lines.append(f"{i:03d}," + ",".join(str(v) for v in values))
            (folder / f"{run}.csv").write_text("\n".join(lines) + "\n")
    return root
