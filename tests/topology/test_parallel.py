"""Parts of one matching on parallel threads: the scheduler, and results that do not depend on the thread count."""

from __future__ import annotations

import gc
import threading
import weakref

import numpy as np
import pytest

from devtools.generators import noisy_prediction_pair
from medloss.topology import api
from medloss.topology._tasks import TaskGraph, run
from medloss.topology.api import barcode, betti_matching, betti_matching_batch, default_num_workers


@pytest.fixture(autouse=True)
def _threads_even_for_small_images(monkeypatch):
    # small images normally run on one thread (handing tasks over costs more than it saves): force the threads
    monkeypatch.setattr(api, "_VOXELS_PER_THREAD", 1)


def _same_result(a, b):
    for name in ("num_matched", "num_unmatched_pred", "num_unmatched_target"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for name in ("pred_matched_birth", "pred_matched_death", "target_matched_birth", "target_matched_death",
                 "pred_unmatched_birth", "pred_unmatched_death", "target_unmatched_birth", "target_unmatched_death"):
        for x, y in zip(getattr(a, name), getattr(b, name)):
            np.testing.assert_array_equal(x, y)  # same pairs in the same order, not only the same set


def test_graph_runs_dependencies_first_on_any_thread_count():
    for threads in (1, 2, 5):
        log = []
        g = TaskGraph()
        g.add("a", lambda: log.append("a") or 2)
        g.add("b", lambda a: log.append("b") or a * 3, "a")
        g.add("c", lambda a: log.append("c") or a + 1, "a")
        g.add("d", lambda b, c: log.append("d") or (b, c), "b", "c")
        assert run([g], ["d"], threads) == [(6, 3)]
        assert log[0] == "a" and log[-1] == "d" and sorted(log) == ["a", "b", "c", "d"]


def test_graphs_run_side_by_side_on_several_threads():
    # two independent tasks that can only finish together: proves that two threads run at the same time
    barrier = threading.Barrier(2, timeout=10)
    graphs = []
    for i in range(2):
        g = TaskGraph()
        g.add("wait", lambda i=i: barrier.wait() * 0 + i)
        graphs.append(g)
    assert run(graphs, ["wait", "wait"], 2) == [0, 1]


def test_graph_definition_errors():
    g = TaskGraph()
    g.add("a", lambda: 1)
    with pytest.raises(ValueError, match="defined twice"):
        g.add("a", lambda: 2)
    with pytest.raises(ValueError, match="not defined before"):
        g.add("b", lambda x: x, "missing")
    with pytest.raises(ValueError, match="unknown output"):
        run([g], ["nope"])


@pytest.mark.parametrize("threads", [1, 3])
def test_first_error_is_raised_and_dependents_do_not_run(threads):
    ran = []
    g = TaskGraph()
    g.add("boom", lambda: (_ for _ in ()).throw(RuntimeError("kernel failed")))
    g.add("after", lambda x: ran.append(x), "boom")
    g.add("other", lambda: 1)
    with pytest.raises(RuntimeError, match="kernel failed"):
        run([g], ["after"], threads)
    assert ran == []


def test_intermediates_are_released_after_their_last_consumer():
    class Big:
        pass

    ref = {}

    def make():
        obj = Big()
        ref["w"] = weakref.ref(obj)
        return obj

    def check_released(_):
        gc.collect()
        return ref["w"]() is None

    g = TaskGraph()
    g.add("big", make)
    g.add("use", lambda b: 1, "big")
    g.add("later", check_released, "use")
    assert run([g], ["later"], 1) == [True]


@pytest.mark.parametrize("shape", [(48, 40), (20, 18, 16)])
@pytest.mark.parametrize("binary_target", [True, False])
def test_matching_is_independent_of_the_thread_count(shape, binary_target):
    pred, gt = noisy_prediction_pair(shape, seed=7)
    if not binary_target:
        gt = noisy_prediction_pair(shape, seed=8)[0]
    ref = betti_matching(pred, gt, num_workers=1)
    assert ref.num_matched.sum() > 0 and ref.num_unmatched_pred.sum() > 0  # a case with something to match
    for threads in (2, 4):
        _same_result(betti_matching(pred, gt, num_workers=threads), ref)
    for relative, connectivity in ((True, 1), (False, len(shape))):
        one = betti_matching(pred, gt, relative=relative, connectivity=connectivity, num_workers=1)
        _same_result(betti_matching(pred, gt, relative=relative, connectivity=connectivity, num_workers=3), one)


def test_batch_of_mixed_shapes_shares_one_pool():
    pairs = [noisy_prediction_pair(s, seed=i) for i, s in enumerate([(30, 30), (12, 14, 10), (16, 16), (10, 9, 8)])]
    preds, gts = zip(*pairs)
    singles = [betti_matching(p, g, num_workers=1) for p, g in pairs]
    for threads in (1, 2, 7):
        for got, want in zip(betti_matching_batch(preds, gts, num_workers=threads), singles):
            _same_result(got, want)


def test_barcode_is_independent_of_the_thread_count():
    x = noisy_prediction_pair((14, 12, 10), seed=3)[0]
    one = barcode(x, num_workers=1)
    two = barcode(x, num_workers=2)
    for a, b in zip(one.birth + one.death, two.birth + two.death):
        np.testing.assert_array_equal(a, b)


def test_bad_pair_in_a_batch_is_named_and_num_workers_checked():
    ok = np.zeros((4, 4))
    with pytest.raises(ValueError, match=r"pair 1: .*same shape"):
        betti_matching_batch([ok, ok], [ok, np.zeros((4, 5))])
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="num_workers"):
            betti_matching(ok, ok, num_workers=bad)
    assert default_num_workers() >= 1


def test_small_images_stay_on_one_thread(monkeypatch):
    monkeypatch.undo()
    used = []
    real_run = api.run
    monkeypatch.setattr(api, "run", lambda graphs, outputs, threads: used.append(threads) or real_run(graphs, outputs,
                                                                                                      threads))
    pred, gt = noisy_prediction_pair((64, 64), seed=1)
    betti_matching(pred, gt, num_workers=4)
    big = noisy_prediction_pair((256, 256), seed=1)
    betti_matching(*big, num_workers=4)
    assert used == [1, 2]


def test_small_samples_run_whole_and_large_ones_split_in_one_batch(monkeypatch):
    monkeypatch.undo()  # the real size rule: 24^2 pairs run whole on a thread, the 256^2 pair is split into parts
    used = []
    real = api._as_one_task
    monkeypatch.setattr(api, "_as_one_task", lambda g, o, n: used.append(n) or real(g, o, n))
    pairs = [noisy_prediction_pair(s, seed=i) for i, s in enumerate([(24, 24), (256, 256), (24, 24), (24, 24)])]
    preds, gts = zip(*pairs)
    got = betti_matching_batch(preds, gts, num_workers=2)
    assert used == [24 * 24] * 3
    for g, (p, t) in zip(got, pairs):
        _same_result(g, betti_matching(p, t, num_workers=1))
