"""How many torch threads a run uses (`threads=auto` in conf/train.yaml, or a number).

torch starts one intra-op thread per core. For the course's models a step is a matrix product of
a few thousand numbers: splitting it across threads costs more than it saves, and on a machine
that also runs a browser, an editor and TensorBoard the threads wait for each other (2-20x slower
on a busy 2-core machine). `auto` therefore takes one thread while a batch holds fewer than
CROSSOVER numbers (rows x features), measured on the development machine with
`python scripts/threads.py` (README, "Speed"), and torch's own choice above it.

A number given by the user, OMP_NUM_THREADS, and Lightning's DDP setting (it divides the cores
between the processes of a machine and sets OMP_NUM_THREADS for them) are respected.
"""

from __future__ import annotations

import os
import statistics
import time

import torch

CROSSOVER = 10_000_000  # numbers in a batch (rows x features) below which 2 threads never beat 1 here
TORCH_DEFAULT = torch.get_num_threads()  # torch's choice at import (one per core, or OMP_NUM_THREADS)


def choose(setting: int | str, batch_numbers: int, distributed: bool) -> int | None:
    """The thread count to set, or None to leave what Lightning's DDP or OMP_NUM_THREADS set."""
    if setting != "auto":
        return int(setting)
    if distributed or os.environ.get("OMP_NUM_THREADS"):
        return None
    return 1 if batch_numbers < CROSSOVER else TORCH_DEFAULT  # a notebook's next, larger run gets them back


def apply(setting: int | str, batch_numbers: int, distributed: bool) -> None:
    n = choose(setting, batch_numbers, distributed)
    if n is not None and n != torch.get_num_threads():
        torch.set_num_threads(n)


def epoch_seconds(rows: int, features: int, threads: int, epochs: int = 50) -> float:
    """Seconds per full-batch epoch of the journal's step (nn.Linear, MSELoss, SGD) on random data."""
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(rows, features, generator=gen), torch.randn(rows, 1, generator=gen)
    model = torch.nn.Linear(features, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = torch.nn.MSELoss()
    start = time.perf_counter()
    for _ in range(epochs):
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return (time.perf_counter() - start) / epochs


def crossover_table(sizes: list[tuple[int, int]], repeats: int = 7, max_threads: int = 2) -> list[dict]:
    """For each (rows, features): the median epoch time with 1 and with `max_threads` threads, the runs
    interleaved so that a burst of load from elsewhere hits both alike."""
    table = []
    for rows, features in sizes:
        times: dict[int, list[float]] = {1: [], max_threads: []}
        for _ in range(repeats):
            for threads in times:
                times[threads].append(epoch_seconds(rows, features, threads))
        one, many = (statistics.median(times[t]) for t in (1, max_threads))
        table.append({"rows": rows, "features": features, "numbers": rows * features,
                      "1 thread us": one * 1e6, f"{max_threads} threads us": many * 1e6, "ratio": one / many})
    return table
