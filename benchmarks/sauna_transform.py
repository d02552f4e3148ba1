"""Benchmark of the SAUNA soft-label transform against a plain scipy implementation (same process, one core).

Run: ``OMP_NUM_THREADS=1 python benchmarks/sauna_transform.py [--size 256]``. Prints CPU seconds
(``time.process_time``) for a ``size``^3 label map with 3 foreground classes and for a 512^2 vessel-like 2D mask.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy import ndimage

from medloss.transforms import SAUNATransform


def scipy_baseline(label: np.ndarray, num_classes: int) -> np.ndarray:
    """Straightforward reference: scipy EDT (float64) + maximum_filter on the full array, per class."""
    out = []
    for c in range(1, num_classes):
        mask = label == c
        d_in = ndimage.distance_transform_edt(mask)
        m = d_in.max()
        if m == 0:
            out.append(np.full(mask.shape, -1.0, dtype=np.float32))
            continue
        d = np.minimum(ndimage.distance_transform_edt(~mask), m)
        k = math.ceil(m)
        k += 1 - k % 2
        pool_in = ndimage.maximum_filter(d_in, size=k, mode="constant", cval=-np.inf)
        pool_out = ndimage.maximum_filter(d, size=k, mode="constant", cval=-np.inf)
        soft = np.where(mask, 1 - (pool_in - d_in) / (m + 1e-6), -1 + (pool_out - d) / (m + 1e-6))
        out.append(soft.astype(np.float32))
    return np.stack(out)


def volume(size: int, seed: int = 0) -> np.ndarray:
    """Three classes: a large ellipsoid (organ), a random tube tree (vessels) and small spheres (lesions)."""
    rng = np.random.default_rng(seed)
    z, y, x = (g / np.float32(size) for g in np.ogrid[:size, :size, :size])
    label = np.zeros((size,) * 3, dtype=np.uint8)
    label[((z - 0.5) / 0.3) ** 2 + ((y - 0.45) / 0.25) ** 2 + ((x - 0.5) / 0.35) ** 2 < 1] = 1
    for radius in (0.008, 0.02):  # thin and thick vessels: centre lines dilated through one distance transform each
        lines = np.ones(label.shape, dtype=bool)
        for _ in range(6):
            p0, p1 = rng.random(3), rng.random(3)
            t = np.linspace(0, 1, 4 * size)[:, None]
            lines[tuple(np.clip(((p0 + t * (p1 - p0)) * size).astype(int), 0, size - 1).T)] = False
        label[ndimage.distance_transform_cdt(lines, metric="taxicab") <= radius * size] = 2
    for _ in range(6):
        c = rng.random(3)
        label[(z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < rng.uniform(0.02, 0.06) ** 2] = 3
    return label


def timed(fn, *args):
    t = time.process_time()
    out = fn(*args)
    return out, time.process_time() - t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()

    label = volume(args.size)[None]
    transform = SAUNATransform(num_classes=4)
    transform(label[:, ::8, ::8, ::8])  # warm-up: imports and numba cache loading
    ours, t_ours = timed(transform, label)
    ref, t_ref = timed(scipy_baseline, label[0], 4)
    err = float(np.abs(ours - ref).max())
    print(f"3D {args.size}^3 x 3 classes: medloss {t_ours:.2f} s CPU, scipy baseline {t_ref:.2f} s CPU, "
          f"speed-up x{t_ref / t_ours:.1f}, max |diff| {err:.2e}")

    rng = np.random.default_rng(1)
    img = np.zeros((512, 512), dtype=np.uint8)
    for _ in range(40):  # random line segments of width 1..9 px, like a vessel tree at 512^2
        r0, c0, r1, c1 = rng.integers(0, 512, 4)
        n = 2 * max(abs(int(r1) - int(r0)), abs(int(c1) - int(c0)), 1)
        rr = np.linspace(r0, r1, n).astype(int)
        cc = np.linspace(c0, c1, n).astype(int)
        line = np.zeros_like(img, dtype=bool)
        line[rr, cc] = True
        width = int(rng.integers(0, 5))  # iterations=0 would dilate until nothing changes
        img[ndimage.binary_dilation(line, iterations=width) if width else line] = 1
    img = img[None]
    for distance in ("edt", "chamfer_cv2"):
        t2 = SAUNATransform(distance=distance)
        t2(img)  # warm-up (numba compile for the chamfer kernel)
        ours2, t_ours2 = timed(t2, img)
        ref2, t_ref2 = timed(scipy_baseline, img[0], 2)
        print(f"2D 512^2 ({distance}): medloss {t_ours2 * 1e3:.1f} ms CPU, scipy baseline {t_ref2 * 1e3:.1f} ms CPU, "
              f"ratio x{t_ref2 / t_ours2:.1f}, max |diff| vs exact {float(np.abs(ours2 - ref2).max()):.2e}")


if __name__ == "__main__":
    main()
