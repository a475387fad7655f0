"""gradlab against plain PyTorch loops on the same workload, in one process.

Run: python scripts/benchmark.py                      # the journal task and make_regression 1,000,000 x 100
     python scripts/benchmark.py --rows 100000        # a smaller large workload
     python scripts/benchmark.py --workload journal   # one workload only (journal or large)
     python scripts/benchmark.py --workload feedforward --rounds 3   # lesson 13 on digits, and the DataLoader
     python scripts/benchmark.py --workload cnn --rounds 5 --threads 1   # lesson 14 on digits, 4 epochs
     python scripts/benchmark.py --process --runs 5   # whole processes: train.py vs the journal script
     python scripts/benchmark.py --workload journal trainer.log_every_n_steps=1000   # what logging costs
     python scripts/benchmark.py --workload csv       # reading a 1,000,000 x 11 CSV, against pandas.read_csv
     python scripts/benchmark.py --workload csv --predict  # and predict.py streaming it
     (or make benchmark ARGS="--rows 100000")

Workloads (README "Speed"):
- journal: make_regression(100, 1, noise 20), SGD lr 0.01, 1000 full-batch epochs. Plain: the
  journal's loop (forward, MSELoss, backward, step, zero_grad) on gradlab's training split from
  gradlab's initial weights. gradlab: `train(cfg)` with the config `python scripts/train.py
  model=linear` runs (TensorBoard, checkpoints, validation, callbacks), no progress bar (its
  output goes to a buffer, not a terminal). Its time per epoch is taken by the training loader:
  from the start of the first epoch to the start of the last, over the epochs between, so every
  cost paid inside the loop (validation, checkpoints, logging, pictures) counts at its rate, and
  the one-off start and end of a run (timed by --process) do not.
- large: make_regression(rows, 100), batch 1024, one shuffled epoch. Plain: randperm and x[idx]
  per batch, in gradlab's batch order. gradlab: `train(cfg)` with data.batch_size=1024 and
  trainer.max_epochs=1 on the same tensors (passed in, so the data is in memory once); its epoch
  is timed by the training loader, from the first batch to the last.
- feedforward (only when named): experiment=course_feedforward, 20 epochs of lesson 13 on digits.
  Plain: the lesson's loop (nn.Sequential, CrossEntropyLoss, Adam) on gradlab's shuffled batches;
  the floor: the same in a minimal LightningModule under Trainer(barebones=True); gradlab with the
  experiment's defaults; and gradlab with data.loader=dataloader, which must end at the very same loss.
- cnn (only when named): experiment=course_cnn shortened to 4 epochs (360 steps of 4 images each), the
  same three: lesson 14's loop (conv, relu, pool twice, three linear layers; SGD), the floor, gradlab.
- csv (not part of "all"): writes a --rows x 11 numeric CSV (10 features and a target, 7
  significant digits) and reads it, each read in a process of its own that has first imported
  everything either side uses (torch, Lightning, gradlab, pyarrow, pandas): pandas.read_csv(path,
  dtype="float32") alone, the yardstick, against gradlab's `data=csv` (CsvDataModule.setup: the
  read, the split, the float32 tensors). Memory is the read's peak RSS minus the RSS right after
  those imports, against the float32 data (rows x 11 x 4 bytes). With --train, gradlab then trains
  one epoch on the file (data.batch_size=4096) and times it. With --predict, `predict.py input=` the
  file, in a process of its own after the same imports, with a data=csv run trained for 5 epochs on
  the file's first 2,000 rows: its time, and its peak RSS over the imports' as the read's.
Rounds are interleaved (plain, gradlab, plain, ...) and the table shows medians: the machine may
be shared, so read the ratios. Both runs must end at the same training MSE (the script exits 1
otherwise). Peak memory is the process's resident set (Linux VmHWM), reset before each run.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import io
import logging
import os
import pty
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MSE_RTOL = 1e-5  # same ops on the same rows in the same order: equal up to float rounding


# ---------------------------------------------------------------- memory (Linux; elsewhere ru_maxrss)


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> float:
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else float("nan")


def reset_peak() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def peak_mb() -> float:
    kb = _status_kb("VmHWM")
    if kb is None:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux, never reset
    return kb / 1024


# ---------------------------------------------------------------- the two sides


def plain_journal(x, y, seed: int, epochs: int, lr: float) -> tuple[float, float]:
    """The journal's loop, timed: (seconds per epoch, final training MSE)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)  # train() seeds the same way before building the model: same init
    model = nn.Linear(x.shape[1], 1)
    criterion = nn.MSELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    curve = []
    started = time.perf_counter()
    for epoch in range(epochs):
        y_predicted = model(x)
        loss = criterion(y_predicted, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if (epoch + 1) % 10 == 0:  # the journal prints the loss every 10 epochs
            curve.append(loss.item())
    seconds = (time.perf_counter() - started) / epochs
    with torch.no_grad():
        return seconds, criterion(model(x), y).item()


def plain_shuffled_epoch(x, y, seed: int, batch_size: int, lr: float) -> tuple[float, float]:
    """One epoch of mini-batch SGD with randperm and x[idx]: (seconds, final training MSE)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    model = nn.Linear(x.shape[1], 1)
    criterion = nn.MSELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    started = time.perf_counter()
    # gradlab's order for epoch 0 (data.EpochShuffle), so both runs see the same batches
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed * 100_003 + 0))
    for start in range(0, len(x), batch_size):
        idx = order[start : start + batch_size]
        loss = criterion(model(x[idx]), y[idx])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    seconds = time.perf_counter() - started
    with torch.no_grad():
        mse = sum(criterion(model(x[s : s + 65536]), y[s : s + 65536]).item() * len(x[s : s + 65536])
                  for s in range(0, len(x), 65536)) / len(x)
    return seconds, mse


def compose(*overrides: str, config: str = "train"):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config, overrides=list(overrides))


def timed_datamodule(cfg_data):
    """The RegressionDataModule that `cfg_data` describes, whose training loader notes the time
    at the start of each epoch (`epoch_starts`) and, in `clock`, also as it hands out each batch
    (a callback would add hook calls)."""
    from gradlab.lessons.data import RegressionDataModule, TensorBatches

    class ClockedBatches(TensorBatches):
        def __iter__(self):
            clock.append(time.perf_counter())  # the epoch starts (before the shuffle)
            epoch_starts.append(clock[-1])
            for batch in super().__iter__():
                clock.append(time.perf_counter())
                yield batch

    class ClockedRegression(RegressionDataModule):
        def train_dataloader(self) -> TensorBatches:
            b = super().train_dataloader()
            return ClockedBatches(b.x, b.y, b.batch_size, b.sampler)

    clock: list[float] = []
    epoch_starts: list[float] = []
    dm = ClockedRegression(**{k: v for k, v in cfg_data.items() if k != "_target_"})
    dm.clock, dm.epoch_starts = clock, epoch_starts
    return dm


def gradlab_run(cfg, dm):
    """train(cfg) on `dm`, quietly: (RunResult, seconds)."""
    from gradlab.run.recipe import train

    dm.clock.clear()
    dm.epoch_starts.clear()
    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        result = train(cfg, datamodule=dm)
    return result, time.perf_counter() - started


def floor_run(dm, seed: int, epochs: int, lr: float) -> float:
    """Lightning's own floor on the same batches: the journal's forward, MSELoss and SGD in a
    minimal LightningModule (no self.log, no validation, no checkpoints) under
    Trainer(barebones=True); its training loss after the run. Timed by the loader, as gradlab."""
    import lightning.pytorch as L
    import torch
    from torch import nn

    class Minimal(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(dm.splits["train"][0].shape[1], 1)
            self.criterion = nn.MSELoss()

        def training_step(self, batch, batch_idx):
            x, y = batch
            return self.criterion(self.lin(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=lr)

    dm.clock.clear()
    dm.epoch_starts.clear()
    torch.manual_seed(seed)  # as train() seeds before it builds its model: the same initial weights
    model = Minimal()
    trainer = L.Trainer(barebones=True, max_epochs=epochs, accelerator="cpu", devices=1)
    trainer.fit(model, train_dataloaders=dm.train_dataloader())
    x, y = dm.splits["train"]
    with torch.no_grad():
        return sum(model.criterion(model.lin(x[s : s + 65536]), y[s : s + 65536]).item() * len(x[s : s + 65536])
                   for s in range(0, len(x), 65536)) / len(x)


def plain_classifier(make_net, make_optimizer, x, y, seed: int, data_seed: int, epochs: int, batch_size: int,
                     print_every: int) -> tuple[float, float]:
    """A course lesson's loop (13 or 14: the network, CrossEntropyLoss, the optimiser; the loss read every
    `print_every` steps, as the lesson prints it), on shuffled batches in gradlab's order, timed:
    (seconds per epoch, final training CE)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)  # train() seeds the same way before building the model: same init
    model = make_net()
    criterion = nn.CrossEntropyLoss()
    optimizer = make_optimizer(model.parameters())
    started = time.perf_counter()
    for epoch in range(epochs):
        # gradlab's order for this epoch (data.EpochShuffle), so all runs see the same batches
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(data_seed * 100_003 + epoch))
        for i, start in enumerate(range(0, len(x), batch_size)):
            idx = order[start : start + batch_size]
            loss = criterion(model(x.index_select(0, idx)), y.index_select(0, idx))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if (i + 1) % print_every == 0:  # the lesson prints the loss now and then
                loss.item()
    seconds = (time.perf_counter() - started) / epochs
    with torch.no_grad():
        return seconds, criterion(model(x), y).item()


def feedforward_net(n_features: int, hidden: int, n_classes: int):
    """Lesson 13's NeuralNet as an nn.Sequential: Linear, ReLU, Linear."""
    from torch import nn

    return nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))


def cnn_net(image_shape, channels: list[int], kernel_size: int, padding: int, pool: int, hidden: list[int],
            n_classes: int):
    """Lesson 14's ConvNet as an nn.Sequential: per channel count conv, relu, max-pool; flatten; linear
    layers with relu between them (layers created first to last, as gradlab's, so the same init)."""
    from torch import nn

    c, h, w = image_shape
    layers = [nn.Unflatten(1, (c, h, w))]
    for c_out in channels:
        layers += [nn.Conv2d(c, c_out, kernel_size, padding=padding), nn.ReLU(), nn.MaxPool2d(pool)]
        c, h, w = c_out, (h + 2 * padding - kernel_size + 1) // pool, (w + 2 * padding - kernel_size + 1) // pool
    layers.append(nn.Flatten())
    widths = [c * h * w, *hidden, n_classes]
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers += [nn.Linear(n_in, n_out)] + ([nn.ReLU()] if i < len(widths) - 2 else [])
    return nn.Sequential(*layers)


class ClockedLoader:
    """Any training loader (gradlab's batches or a DataLoader), noting the time at the start of each
    epoch and as it hands out each batch; its `sampler` stays visible, so Lightning's set_epoch reaches it."""

    batch_sampler = None

    def __init__(self, loader, clock: list[float], epoch_starts: list[float]):
        self.loader, self.sampler, self.clock, self.epoch_starts = loader, loader.sampler, clock, epoch_starts

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        self.clock.append(time.perf_counter())
        self.epoch_starts.append(self.clock[-1])
        for batch in self.loader:
            self.clock.append(time.perf_counter())
            yield batch


def clocked_datamodule(cfg_data):
    """The datamodule `cfg_data` describes (any gradlab class), its training loader clocked."""
    from hydra.utils import get_class

    cls = get_class(cfg_data._target_)

    class Clocked(cls):
        def train_dataloader(self):
            return ClockedLoader(super().train_dataloader(), self.clock, self.epoch_starts)

    dm = Clocked(**{k: v for k, v in cfg_data.items() if k != "_target_"})
    dm.clock, dm.epoch_starts = [], []
    return dm


def floor_classifier(dm, make_net, make_optimizer, seed: int, epochs: int) -> float:
    """Lightning's floor for a course lesson: the same network, CrossEntropyLoss and optimiser in a minimal
    LightningModule under Trainer(barebones=True), on the same batches; its final training CE."""
    import lightning.pytorch as L
    import torch
    from torch import nn

    class Minimal(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = make_net()
            self.criterion = nn.CrossEntropyLoss()

        def training_step(self, batch, batch_idx):
            x, y = batch
            return self.criterion(self.net(x), y)

        def configure_optimizers(self):
            return make_optimizer(self.parameters())

    dm.clock.clear()
    dm.epoch_starts.clear()
    torch.manual_seed(seed)
    model = Minimal()
    trainer = L.Trainer(barebones=True, max_epochs=epochs, accelerator="cpu", devices=1)
    trainer.fit(model, train_dataloaders=dm.train_dataloader())
    x, y = dm.splits["train"]
    with torch.no_grad():
        return model.criterion(model.net(x), y).item()


# ---------------------------------------------------------------- workloads


def classifier_lesson(name: str, what: str, cfg, make_net, rounds: int, epochs: int,
                      loader_cfg=None) -> list[dict]:
    """A course lesson on digits: plain loop, barebones floor and gradlab with the experiment's defaults,
    interleaved, on the same batches from the same initial weights; with `loader_cfg`, also gradlab with
    data.loader=dataloader (a torch DataLoader on the same batches), which must end at the very same loss."""
    from hydra.utils import instantiate

    sides = [("gradlab", cfg)] + ([("dataloader", loader_cfg)] if loader_cfg is not None else [])
    dms = {side: clocked_datamodule(c.data) for side, c in sides}
    for d in dms.values():
        d.setup()
    dm = dms["gradlab"]
    x, y = dm.splits["train"]
    make_optimizer = instantiate(cfg.optimizer)  # the experiment's optimiser, e.g. SGD(lr=0.05)
    print_every = cfg.callbacks.lesson.every_n_steps
    rows = {"plain": [], "barebones": [], **{side: [] for side, _ in sides}}

    def per_epoch(d) -> float:
        return (d.epoch_starts[-1] - d.epoch_starts[0]) / (len(d.epoch_starts) - 1)

    for _ in range(rounds):
        reset_peak()
        seconds, loss = plain_classifier(make_net, make_optimizer, x, y, cfg.seed, cfg.data.seed, epochs,
                                         cfg.data.batch_size, print_every)
        rows["plain"].append((seconds, loss, peak_mb()))
        reset_peak()
        loss = floor_classifier(dm, make_net, make_optimizer, cfg.seed, epochs)
        rows["barebones"].append((per_epoch(dm), loss, peak_mb()))
        for side, config in sides:
            reset_peak()
            result, _ = gradlab_run(config, dms[side])
            rows[side].append((per_epoch(dms[side]), result.metrics["train/final_loss"], peak_mb()))
    what = f"{name}: digits {len(x)} x {x.shape[1]}, {what}, batch {cfg.data.batch_size}, {epochs} epochs"
    table = _rows(name, what, len(x), {k: rows[k] for k in ("plain", "barebones", "gradlab")})
    if loader_cfg is None:
        return table
    loader = _rows(name, what, len(x), {"plain": rows["plain"], "barebones": rows["gradlab"],
                                                     "gradlab": rows["dataloader"]})[2]
    loader["run"] = "gradlab, data.loader=dataloader"
    loader["loader_ratio"] = loader.pop("floor_ratio")  # against gradlab's in-memory batches
    loader["floor_ratio"] = loader["seconds"] / table[1]["seconds"]
    return table + [loader]


def feedforward(rounds: int, epochs: int, root: Path, overrides: list[str]) -> list[dict]:
    """Lesson 13 on digits (experiment=course_feedforward, 64-500-10 relu, Adam, batch 100), and gradlab
    with data.loader=dataloader."""
    cfg = compose("experiment=course_feedforward", f"root_dir={root}", *overrides, f"trainer.max_epochs={epochs}")
    loader_cfg = compose("experiment=course_feedforward", f"root_dir={root}", *overrides,
                         f"trainer.max_epochs={epochs}", "data.loader=dataloader")
    hidden = int(cfg.model.hidden[0])
    return classifier_lesson("feedforward", f"64-{hidden}-10 relu, Adam", cfg,
                             lambda: feedforward_net(64, hidden, 10), rounds, epochs, loader_cfg)


def cnn(rounds: int, epochs: int, root: Path, overrides: list[str]) -> list[dict]:
    """Lesson 14 scaled to digits (experiment=course_cnn: 1x8x8 -> conv(1->6) -> pool -> conv(6->16) -> pool
    -> 64 -> 120 -> 84 -> 10, SGD lr 0.05, batch 4), shortened to `epochs`."""
    cfg = compose("experiment=course_cnn", f"root_dir={root}", *overrides, f"trainer.max_epochs={epochs}")
    m = cfg.model
    net = lambda: cnn_net((1, 8, 8), list(m.channels), m.kernel_size, m.padding, m.pool, list(m.hidden), 10)  # noqa: E731
    return classifier_lesson("cnn", "course_cnn's convnet, SGD", cfg, net, rounds, epochs)


def journal(rounds: int, epochs: int, root: Path, overrides: list[str]) -> list[dict]:
    cfg = compose("model=linear", f"root_dir={root}", *overrides, f"trainer.max_epochs={epochs}")
    dm = timed_datamodule(cfg.data)
    dm.setup()
    x, y = dm.splits["train"]
    lr = float(cfg.optimizer.lr)
    rows = {"plain": [], "barebones": [], "gradlab": []}
    for _ in range(rounds):
        reset_peak()
        seconds, mse = plain_journal(x, y, cfg.seed, epochs, lr)
        rows["plain"].append((seconds, mse, peak_mb()))
        reset_peak()
        mse = floor_run(dm, cfg.seed, epochs, lr)
        starts = dm.epoch_starts  # one per epoch: everything between two is that epoch's
        rows["barebones"].append(((starts[-1] - starts[0]) / (len(starts) - 1), mse, peak_mb()))
        reset_peak()
        result, _ = gradlab_run(cfg, dm)
        starts = dm.epoch_starts
        seconds = (starts[-1] - starts[0]) / (len(starts) - 1)
        rows["gradlab"].append((seconds, result.metrics["train/final_loss"], peak_mb()))
    what = f"journal: make_regression {cfg.data.n_samples} x {x.shape[1]}, {epochs} full-batch epochs"
    return _rows("journal", what, len(x), rows)


def large(rounds: int, n_rows: int, n_features: int, batch_size: int, root: Path,
          overrides: list[str]) -> list[dict]:
    cfg = compose("model=linear", f"root_dir={root}", *overrides, f"data.n_samples={n_rows}",
                  f"data.n_features={n_features}", f"data.batch_size={batch_size}", "trainer.max_epochs=1")
    baseline = rss_mb()
    reset_peak()
    started = time.perf_counter()
    dm = timed_datamodule(cfg.data)
    dm.setup()
    made, data_peak = time.perf_counter() - started, peak_mb()
    x, y = dm.splits["train"]
    data_mb = sum(t.numel() * t.element_size() for split in ("train", "val", "test")
                  for t in dm.splits[split]) / 2**20
    rows = {"plain": [], "barebones": [], "gradlab": []}
    lr = float(cfg.optimizer.lr)
    n_batches = -(-len(x) // batch_size)
    for _ in range(rounds):
        reset_peak()
        seconds, mse = plain_shuffled_epoch(x, y, cfg.seed, batch_size, lr)
        rows["plain"].append((seconds, mse, peak_mb()))
        reset_peak()
        mse = floor_run(dm, cfg.seed, 1, lr)
        # from the epoch's start to handing out its last batch: the shuffle and n - 1 steps
        rows["barebones"].append(((dm.clock[-1] - dm.clock[0]) * n_batches / (n_batches - 1), mse, peak_mb()))
        reset_peak()
        result, _ = gradlab_run(cfg, dm)
        seconds = (dm.clock[-1] - dm.clock[0]) * n_batches / (n_batches - 1)
        rows["gradlab"].append((seconds, result.metrics["train/final_loss"], peak_mb()))
    what = f"large: make_regression {n_rows:,} x {n_features}, batch {batch_size}, 1 shuffled epoch"
    table = _rows("large", what, len(x), rows)
    peak = max(r[2] for side in rows.values() for r in side)
    table.append({"memory": True, "baseline": baseline, "data": data_mb, "made": made,
                  "peak": max(peak, data_peak), "data_peak": data_peak})
    return table


def _rows(name: str, what: str, n: int, rows: dict) -> list[dict]:
    out = []
    for side in ("plain", "barebones", "gradlab"):
        seconds = statistics.median(r[0] for r in rows[side])
        out.append({"workload": name, "what": what, "run": side, "seconds": seconds, "samples_s": n / seconds,
                    "mse": statistics.median(r[1] for r in rows[side]), "peak": max(r[2] for r in rows[side]),
                    "all": [r[0] for r in rows[side]]})
    for row in out[1:]:
        row["ratio"] = row["seconds"] / out[0]["seconds"]
    out[2]["floor_ratio"] = out[2]["seconds"] / out[1]["seconds"]
    return out


# ---------------------------------------------------------------- a big CSV


CSV_TARGETS = {"time": 1.5, "memory": 5.0}  # gradlab / pandas.read_csv; peak over imports / float32 data


def write_csv(path: Path, n_rows: int, seed: int = 0) -> None:
    """A numeric CSV of n_rows x 11 (x0..x9, y = a linear function of them plus noise), in blocks."""
    import numpy as np

    rng = np.random.default_rng(seed)
    w = rng.normal(size=10) * 10
    with open(path, "w") as f:
        f.write(",".join([f"x{i}" for i in range(10)] + ["y"]) + "\n")
        for start in range(0, n_rows, 100_000):
            x = rng.normal(size=(min(100_000, n_rows - start), 10)) * rng.choice([0.1, 1, 100], size=10)
            y = x @ w + rng.normal(scale=20, size=len(x))
            np.savetxt(f, np.column_stack([x, y]), fmt="%.7g", delimiter=",")


def csv_child(side: str, path: str, train: bool) -> None:
    """One read in this process (see the module docstring); prints a JSON line."""
    import json

    import lightning  # noqa: F401
    import pandas as pd
    import pyarrow.csv  # noqa: F401
    import torch  # noqa: F401

    from gradlab.lessons.data import CsvDataModule
    from gradlab.run import recipe  # noqa: F401
    from gradlab.run.predict import predict

    folder = Path(path).parent  # predict: the run csv_workload trained beside the file, and the output
    if side == "predict":
        import pyarrow.compute  # noqa: F401 (predict.py's streaming imports it)

        cfg = compose("ckpt_path=last", f"input={path}", f"output={folder / 'predicted.csv'}",
                      f"root_dir={folder / 'runs'}", config="predict")
    baseline = rss_mb()
    reset_peak()
    started = time.perf_counter()
    if side == "pandas":
        rows = len(pd.read_csv(path, dtype="float32"))
    elif side == "predict":  # every row, streamed: read, predicted, written
        with contextlib.redirect_stdout(printed := io.StringIO()):
            predict(cfg)
        rows = int(printed.getvalue().split("gradlab: ")[-1].split()[0])  # "gradlab: N prediction(s) ..."
    else:
        dm = CsvDataModule(path, "y")
        dm.setup()
        rows = sum(len(dm.splits[name][0]) for name in ("train", "val", "test"))
    out = {"seconds": time.perf_counter() - started, "over_imports": peak_mb() - baseline, "rows": rows,
           "imports_rss": baseline}
    if train:
        del dm
        with tempfile.TemporaryDirectory() as root:
            cfg = compose("data=csv", f"data.path={path}", "data.target=y", "data.batch_size=4096",
                          "trainer.max_epochs=1", f"root_dir={root}")
            started = time.perf_counter()
            result = recipe.train(cfg)
            out["train_seconds"] = time.perf_counter() - started
            out["train_mse"] = result.metrics["train/final_loss"]
            out["train_peak_over_imports"] = peak_mb() - baseline
    print(json.dumps(out))


def csv_workload(rounds: int, n_rows: int, train: bool, predicting: bool = False) -> bool:
    """Prints the csv workload's table; False where gradlab misses a target."""
    import json

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "big.csv"
        started = time.perf_counter()
        write_csv(path, n_rows)
        print(f"wrote {path.name}: {n_rows:,} x 11, {path.stat().st_size / 1e6:.0f} MB in "
              f"{time.perf_counter() - started:.1f} s")
        runs: dict[str, list[dict]] = {"pandas": [], "gradlab": []}
        if predicting:  # a data=csv run to predict with, trained on the file's first 2,000 rows
            with open(path) as f, open(Path(folder) / "first.csv", "w") as first:
                first.writelines(line for _, line in zip(range(2001), f))
            proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "data=csv",
                                   f"data.path={Path(folder) / 'first.csv'}", "data.target=y",
                                   "trainer.max_epochs=5", f"root_dir={Path(folder) / 'runs'}"],
                                  capture_output=True, text=True,
                                  env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
            if proc.returncode != 0:
                print(proc.stdout + proc.stderr)
                return False
            runs["predict"] = []
        for i in range(rounds):
            for side in runs:
                child = [sys.executable, __file__, "--csv-child", side, str(path)]
                child += ["--train"] if side == "gradlab" and train and i == 0 else []
                proc = subprocess.run(child, capture_output=True, text=True,
                                      env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
                if proc.returncode != 0:
                    print(proc.stdout + proc.stderr)
                    return False
                runs[side].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    data_mb = n_rows * 11 * 4 / 2**20
    print(f"\n| read of {n_rows:,} x 11 | seconds (median; all) | / pandas (target <= {CSV_TARGETS['time']}x) "
          f"| peak RSS over imports MB | / float32 data {data_mb:.0f} MB (target <= {CSV_TARGETS['memory']}x) |")
    print("|---|---|---|---|---|")
    medians = {side: statistics.median(r["seconds"] for r in rs) for side, rs in runs.items()}
    ok = True
    for side, rs in runs.items():
        over = max(r["over_imports"] for r in rs)
        ratio, memory = medians[side] / medians["pandas"], over / data_mb
        each = ", ".join(f"{r['seconds']:.3f}" for r in rs)
        print(f"| {side} | {medians[side]:.3f} ({each}) | {ratio:.2f}x "
              f"| {over:.0f} | {memory:.1f}x |")
        if side == "gradlab":
            ok = ratio <= CSV_TARGETS["time"] and memory <= CSV_TARGETS["memory"]
        if side == "predict":  # read, predict and write: its time is not held to the read's target
            ok = ok and memory <= CSV_TARGETS["memory"]
    imported = statistics.median(r["imports_rss"] for rs in runs.values() for r in rs)
    print(f"RSS right after the imports: {imported:.0f} MB")
    trained = [r for r in runs["gradlab"] if "train_seconds" in r]
    if trained:
        r = trained[0]
        print(f"train.py data=csv data.batch_size=4096 trainer.max_epochs=1 (in process, read included): "
              f"{r['train_seconds']:.1f} s, final train MSE {r['train_mse']:.4g}, peak RSS over imports "
              f"{r['train_peak_over_imports']:.0f} MB")
    print("targets " + ("met" if ok else "NOT met"))
    return ok


# ---------------------------------------------------------------- whole processes


def _run_process(cmd: list[str], expect: int = 0, tty: bool = False) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process, run from an empty directory; its
    stdout a pipe that is read (as `| tee log` reads it), or with `tty` an 80 x 24 pseudo-terminal."""
    with tempfile.TemporaryDirectory() as cwd:
        if tty:
            main, child = pty.openpty()
            fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        else:
            main, child = os.pipe()
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=child, stderr=child)
        os.close(child)
        out = b""
        while True:  # read what it prints, as a terminal or a log would
            try:
                chunk = os.read(main, 65536)
            except OSError:  # a pseudo-terminal whose process has ended
                break
            if not chunk:
                break
            out += chunk
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        os.close(main)
        code = os.waitstatus_to_exitcode(status)
        if code != expect:
            tail = out.decode(errors="replace")[-3000:]
            raise SystemExit(f"{' '.join(cmd)} exited {code}, not {expect}:\n{tail}")
    return seconds, usage.ru_maxrss / 1024


def processes(runs: int, long_epochs: int) -> None:
    py = sys.executable
    train = [py, str(ROOT / "scripts" / "train.py")]
    commands = {  # name: (command, exit code, at a terminal)
        "journal script (scripts/journal_plain.py)": ([py, str(ROOT / "scripts" / "journal_plain.py")], 0, False),
        "python scripts/train.py model=linear": ([*train, "model=linear"], 0, False),
        "python scripts/train.py model=linear, at a terminal": ([*train, "model=linear"], 0, True),
        f"train.py trainer.max_epochs={long_epochs}": ([*train, f"trainer.max_epochs={long_epochs}"], 0, False),
        f"train.py trainer.max_epochs={long_epochs}, at a terminal": (
            [*train, f"trainer.max_epochs={long_epochs}"], 0, True),
        "python scripts/train.py --help": ([*train, "--help"], 0, False),
        "python scripts/train.py optimizer.lr=-1 (bad value)": ([*train, "optimizer.lr=-1"], 2, False),
    }
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    names = list(commands)
    for i in range(runs):
        for name in names if i % 2 == 0 else names[::-1]:  # alternate who goes first
            cmd, expect, tty = commands[name]
            times[name].append(_run_process(cmd, expect, tty))
    base = statistics.median(t for t, _ in times[names[0]])
    print(f"\nWhole processes, {runs} runs each, alternating; medians (wall clock, python start to exit)\n")
    print("| command | wall s | / journal script | peak RSS MB | all runs s |")
    print("|---|---|---|---|---|")
    for name in names:
        wall = statistics.median(t for t, _ in times[name])
        rss = statistics.median(m for _, m in times[name])
        all_runs = ", ".join(f"{t:.2f}" for t, _ in times[name])
        print(f"| {name} | {wall:.2f} | {wall / base:.2f}x | {rss:.0f} | {all_runs} |")
    wall = {name: statistics.median(t for t, _ in times[name]) for name in names}
    extra = long_epochs - 1000
    piped = (wall[names[3]] - wall[names[1]]) / extra
    tty = (wall[names[4]] - wall[names[2]]) / extra
    print(f"\nPer epoch, from the difference of {long_epochs} and 1000 epochs: piped {piped * 1e6:.0f} us, "
          f"at a terminal {tty * 1e6:.0f} us: {tty / piped:.2f}x")


# ---------------------------------------------------------------- report


def report(table: list[dict]) -> bool:
    print("\n| workload | run | per epoch | samples/s | / plain | / barebones | final train loss | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    agree = True
    for row in table:
        if row.get("memory"):
            continue
        per_epoch = f"{row['seconds'] * 1e6:.0f} us" if row["seconds"] < 0.01 else f"{row['seconds']:.3f} s"
        ratio = f"{row['ratio']:.2f}x" if "ratio" in row else ""
        floor = f"{row['floor_ratio']:.2f}x" if "floor_ratio" in row else ""
        print(f"| {row['what']} | {row['run']} | {per_epoch} | {row['samples_s']:,.0f} | {ratio} | {floor} | "
              f"{row['mse']:.6f} | {row['peak']:.0f} |")
    print()
    for plain, floor, gl in zip(table, table[1:], table[2:]):
        if (plain.get("run"), floor.get("run"), gl.get("run")) != ("plain", "barebones", "gradlab"):
            continue
        rel = max(abs(r["mse"] - plain["mse"]) for r in (floor, gl)) / max(abs(plain["mse"]), 1e-12)
        ok = rel <= MSE_RTOL
        agree &= ok
        print(f"{plain['workload']}: final loss gradlab and barebones vs plain: relative difference {rel:.1e} "
              f"({'agree' if ok else 'DISAGREE'}); per-round gradlab/barebones "
              + ", ".join(f"{g / f:.2f}" for f, g in zip(floor["all"], gl["all"])))
    for row in table:
        if "loader_ratio" in row:  # the DataLoader path: the same batches, so the very same weights
            gl = next(r for r in table if r.get("workload") == row["workload"] and r["run"] == "gradlab")
            same = row["mse"] == gl["mse"]
            agree &= same
            print(f"{row['workload']}: data.loader=dataloader / memory: {row['loader_ratio']:.2f}x per epoch; "
                  f"final loss {'identical' if same else 'DIFFERENT'} ({row['mse']!r} vs {gl['mse']!r})")
    for row in table:
        if row.get("memory"):
            extra = row["peak"] - row["baseline"]
            print(f"large: float32 data {row['data']:.0f} MB, made in {row['made']:.1f} s (peak while making it "
                  f"{row['data_peak']:.0f} MB); RSS before it {row['baseline']:.0f} MB; peak over the workload "
                  f"{row['peak']:.0f} MB = before + {extra / row['data']:.2f}x the data")
    return agree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workload", choices=["journal", "large", "feedforward", "cnn", "all", "csv"],
                        default="all", help="all: journal and large; feedforward (lesson 13 on digits), cnn "
                                            "(lesson 14 on digits) and csv on their own")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved repeats (medians are shown)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs (>= 4): journal 1000 by default, feedforward 20, cnn 4")
    parser.add_argument("--rows", type=int, default=1_000_000, help="large and csv workloads: rows")
    parser.add_argument("--train", action="store_true", help="csv workload: also train one epoch on the file")
    parser.add_argument("--predict", action="store_true", help="csv workload: also time predict.py on the file")
    parser.add_argument("--csv-child", nargs=2, metavar=("SIDE", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--features", type=int, default=100, help="large workload: columns")
    parser.add_argument("--batch-size", type=int, default=1024, help="large workload: batch size")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's); 1 avoids stalls when other jobs share the CPUs")
    parser.add_argument("--process", action="store_true", help="time whole processes instead")
    parser.add_argument("--runs", type=int, default=5, help="--process: runs of each command")
    parser.add_argument("--long-epochs", type=int, default=5000,
                        help="--process: the longer run, for the per-epoch cost piped and at a terminal")
    parser.add_argument("overrides", nargs="*",
                        help="Hydra overrides for gradlab's runs, e.g. trainer.check_val_every_n_epoch=10")
    args = parser.parse_args()
    if args.csv_child:
        csv_child(*args.csv_child, args.train)
        return
    if args.workload == "csv":
        sys.exit(0 if csv_workload(args.rounds, args.rows, args.train, args.predict) else 1)
    if args.process:
        processes(args.runs, args.long_epochs)
        return

    import torch

    import gradlab.run.recipe  # noqa: F401 (imports Lightning, which sets its loggers' levels)

    if args.threads:
        torch.set_num_threads(args.threads)
    # gradlab's runs on the plain loop's thread count (threads=auto would take 1 for small batches)
    args.overrides = [f"threads={torch.get_num_threads()}", *args.overrides]
    for name in ("lightning.pytorch", "lightning.fabric"):  # "GPU available: False" and such
        logging.getLogger(name).setLevel(logging.WARNING)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
          f"{args.rounds} interleaved rounds, medians"
          + (f"; gradlab overrides: {' '.join(args.overrides)}" if args.overrides else ""))
    table: list[dict] = []
    with tempfile.TemporaryDirectory() as root:
        if args.workload in ("journal", "all"):
            table += journal(args.rounds, args.epochs or 1000, Path(root), args.overrides)
        if args.workload == "feedforward":
            table += feedforward(args.rounds, args.epochs or 20, Path(root), args.overrides)
        if args.workload == "cnn":
            table += cnn(args.rounds, args.epochs or 4, Path(root), args.overrides)
        if args.workload in ("large", "all"):
            table += large(args.rounds, args.rows, args.features, args.batch_size, Path(root), args.overrides)
    if not report(table):
        sys.exit(1)


if __name__ == "__main__":
    main()
