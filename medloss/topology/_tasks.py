"""A small dependency scheduler: the independent parts of one or several matchings run on parallel threads.

A Betti matching is a graph of kernel calls (cell sorts, union-finds, column reductions of three images) in which
most parts depend on one image only; the kernels are compiled with ``nogil=True``, so plain Python threads run them
in parallel. :class:`TaskGraph` holds the calls and their dependencies, :func:`run` executes one or several graphs
(one per sample of a batch) on ``num_threads`` threads in total, the calling thread included:

* a ready task is picked by (graph index, longest remaining path): the first sample finishes first (its memory is
  released early) and the long chains (3D column reductions) start before the short side branches; the other
  threads take the next sample's tasks whenever the first one has nothing ready, so a batch keeps every thread busy;
* a task's result is dropped as soon as its last consumer has run (memory: only the live intermediates are kept);
* the result does not depend on the thread count: every task is deterministic and sees the same inputs.

Threads are created per call (microseconds against a kernel's milliseconds) and never exceed ``num_threads``, so
the knob composes with other thread pools: while the kernels run, the calling thread (torch's, in a loss) waits.
"""

from __future__ import annotations

import heapq
import threading
from typing import Any, Callable, Dict, List, Sequence, Tuple


class TaskGraph:
    """Named calls ``fn(*results of deps)``; ``cost`` is a rough relative duration used to order ready tasks."""

    def __init__(self) -> None:
        self.tasks: Dict[str, Tuple[Callable[..., Any], Tuple[str, ...], float]] = {}

    def add(self, name: str, fn: Callable[..., Any], *deps: str, cost: float = 1.0) -> str:
        if name in self.tasks:
            raise ValueError(f"task {name!r} defined twice")
        for d in deps:
            if d not in self.tasks:
                raise ValueError(f"task {name!r} depends on {d!r}, which is not defined before it")
        self.tasks[name] = (fn, tuple(deps), float(cost))
        return name

    def value(self, name: str, value: Any) -> str:
        """A precomputed input, available to tasks under ``name``."""
        return self.add(name, lambda: value, cost=0.0)


def run(graphs: Sequence[TaskGraph], outputs: Sequence[str], num_threads: int = 1) -> List[Any]:
    """Run every graph and return ``[results of graph i's task outputs[i]]`` (one output per graph).

    Args:
        graphs: one task graph per sample; tasks are added in a topological order (checked by ``add``).
        outputs: per graph, the name of the task whose result is returned.
        num_threads: threads in total, the calling thread included (``1``: everything runs in the caller).

    Raises:
        The first exception a task raised (remaining tasks are not started).
    """
    if len(graphs) != len(outputs):
        raise ValueError("one output per graph")
    # flatten: node = (graph index, name)
    fns: Dict[Tuple[int, str], Callable[..., Any]] = {}
    deps: Dict[Tuple[int, str], Tuple[Tuple[int, str], ...]] = {}
    users: Dict[Tuple[int, str], List[Tuple[int, str]]] = {}
    order: List[Tuple[int, str]] = []
    cost: Dict[Tuple[int, str], float] = {}
    for g, graph in enumerate(graphs):
        for name, (fn, ds, c) in graph.tasks.items():
            node = (g, name)
            fns[node] = fn
            deps[node] = tuple((g, d) for d in ds)
            cost[node] = c
            users[node] = []
            order.append(node)
            for d in deps[node]:
                users[d].append(node)
    # longest remaining path (bottom level) by the cost estimates, computed in reverse topological order
    level: Dict[Tuple[int, str], float] = {}
    for node in reversed(order):
        level[node] = cost[node] + max((level[u] for u in users[node]), default=0.0)
    keep = {(g, name) for g, name in enumerate(outputs)}
    missing = [name for (g, name) in keep if (g, name) not in fns]
    if missing:
        raise ValueError(f"unknown output task(s) {missing}")

    results: Dict[Tuple[int, str], Any] = {}
    waiting = {node: len(deps[node]) for node in order}
    pending_users = {node: len(users[node]) for node in order}
    ready: List[Tuple[int, float, int, Tuple[int, str]]] = []
    seq = {node: i for i, node in enumerate(order)}
    for node in order:
        if waiting[node] == 0:
            heapq.heappush(ready, (node[0], -level[node], seq[node], node))
    lock = threading.Condition()
    state = {"left": len(order), "error": None}

    def finish(node, value, error) -> None:
        with lock:
            if error is not None:
                if state["error"] is None:
                    state["error"] = error
                lock.notify_all()
                return
            results[node] = value
            state["left"] -= 1
            for d in deps[node]:  # free intermediates nobody needs any more
                pending_users[d] -= 1
                if pending_users[d] == 0 and d not in keep:
                    results.pop(d, None)
            for u in users[node]:
                waiting[u] -= 1
                if waiting[u] == 0:
                    heapq.heappush(ready, (u[0], -level[u], seq[u], u))
            lock.notify_all()

    def worker() -> None:
        while True:
            with lock:
                while not ready and state["left"] > 0 and state["error"] is None:
                    lock.wait()
                if state["left"] == 0 or state["error"] is not None:
                    return
                node = heapq.heappop(ready)[3]
                args = [results[d] for d in deps[node]]
            try:
                value = fns[node](*args)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                finish(node, None, exc)
                return
            del args
            finish(node, value, None)

    extra = [threading.Thread(target=worker, daemon=True) for _ in range(max(0, min(num_threads, len(order)) - 1))]
    for t in extra:
        t.start()
    try:
        worker()
    except BaseException as exc:  # e.g. KeyboardInterrupt while waiting: stop the other threads after their task
        with lock:
            if state["error"] is None:
                state["error"] = exc
            lock.notify_all()
        raise
    finally:
        for t in extra:
            t.join()
    if state["error"] is not None:
        raise state["error"]
    return [results[(g, name)] for g, name in enumerate(outputs)]
