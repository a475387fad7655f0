"""The course's lessons 09 (Dataset and DataLoader) and 10 (transforms) as data.loader=dataloader:
the same batches in the same order as gradlab's in-memory batches, so bit-identical weights; the
lesson's loop (a DataLoader over the lesson's own data pipeline) as the oracle for what it prints;
transforms that never write into the stored data; a failing transform refused before any run."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_cfg, run_script
from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.utils.data import DataLoader, Dataset

from gradlab.checks.config import ConfigError, check
from gradlab.lessons.data import Compose, DigitsDataModule, SplitDataset, WineDataModule
from gradlab.run.recipe import train


def _batches(dm, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)  # what Lightning calls at each epoch's start
    return list(loader)


@pytest.mark.parametrize("batch_size", [100, 7, None], ids=["lesson_batches", "ragged_last_batch", "full_batch"])
def test_the_dataloader_serves_the_memory_paths_batches_in_the_same_order(batch_size):
    memory, dataloader = (DigitsDataModule(batch_size=batch_size, loader=k) for k in ("memory", "dataloader"))
    for dm in (memory, dataloader):
        dm.setup("fit")
    assert isinstance(dataloader.train_dataloader(), DataLoader)
    for epoch in (0, 1, 5):
        a, b = _batches(memory, epoch), _batches(dataloader, epoch)
        assert len(a) == len(b) == (1 if batch_size is None else -(-1437 // batch_size))
        for (xa, ya), (xb, yb) in zip(a, b):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    if batch_size == 100:  # and the order does change between epochs (a shuffle, not a fixed order)
        assert not torch.equal(_batches(memory, 0)[0][1], _batches(memory, 1)[0][1])


def _state(result) -> dict:
    return torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


@pytest.mark.parametrize("overrides", [
    ["experiment=course_feedforward", "model.hidden=[32]", "trainer.max_epochs=2"],
    ["experiment=course_softmax", "data.batch_size=4", "trainer.max_epochs=2"],
    ["data=regression", "trainer.max_epochs=20", "model.optimization=analytic"],
    ["experiment=course_dataloader", 'data.transforms=[ToTensor,"MulTransform(1)"]'],
], ids=["mlp_digits", "softmax_wine_batch_4", "regression_full_batch", "identity_transforms"])
def test_the_dataloader_path_gives_bit_identical_weights(overrides, tmp_path):
    memory = train(make_cfg(*overrides, "data.loader=memory", "~callbacks", "name=memory", root_dir=tmp_path))
    dataloader = train(make_cfg(*overrides, "data.loader=dataloader", "~callbacks", "name=loader",
                                root_dir=tmp_path))
    a, b = _state(memory), _state(dataloader)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert memory.metrics == dataloader.metrics


class LessonMulTransform:
    """10_transformers.py's MulTransform, as written: it multiplies in place."""

    def __init__(self, factor):
        self.factor = factor

    def __call__(self, sample):
        inputs, targets = sample
        inputs *= self.factor
        return inputs, targets


def test_mul_transform_never_modifies_the_stored_data_unlike_the_lessons():
    x, y = torch.arange(12.0).reshape(4, 3), torch.tensor([0, 1, 0, 1])
    stored = x.clone()
    dataset = SplitDataset(x, y, Compose(["ToTensor", "MulTransform(4)"]))
    first, second = dataset[1][0], dataset[1][0]
    assert torch.equal(first, 4 * stored[1]) and torch.equal(second, first)  # read twice, the same
    assert torch.equal(x, stored)
    # the lesson's own transform on the same kind of row: every read multiplies the stored row again
    lessons = SplitDataset(x, y, LessonMulTransform(4))
    assert torch.equal(lessons[1][0], 4 * stored[1]) and torch.equal(lessons[1][0], 16 * stored[1])
    assert not torch.equal(x, stored)


class WineDataset(Dataset):
    """09_dataloader.py's WineDataset, on the course's split of sklearn's wine data, StandardScaler'd."""

    def __init__(self):
        X, y = load_wine(return_X_y=True)
        X_train, _, y_train, _ = train_test_split(X, y, test_size=0.2, random_state=1234)
        self.x = torch.from_numpy(StandardScaler().fit_transform(X_train).astype(np.float32))
        self.y = torch.from_numpy(y_train)
        self.n_samples = len(self.x)

    def __getitem__(self, index):
        return self.x[index], self.y[index]

    def __len__(self):
        return self.n_samples


def test_course_dataloader_prints_the_lessons_lines_and_trains_like_its_loop(capsys, tmp_path):
    """Unshuffled, so the lesson's DataLoader(shuffle=False) takes the same batches."""
    dataset = WineDataset()
    loader = DataLoader(dataset=dataset, batch_size=4, shuffle=False)
    model = nn.Linear(13, 3)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    criterion, optimizer = nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1)
    lines = []
    for epoch in range(2):
        for i, (inputs, labels) in enumerate(loader):
            loss = criterion(model(inputs), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if (i + 1) % 5 == 0:
                lines.append(f"Epoch: {epoch + 1}/2, Step {i + 1}/{len(loader)}| Inputs {inputs.shape} | "
                             f"Labels {labels.shape}")

    result = train(make_cfg("experiment=course_dataloader", "data.shuffle=false", "model.init=zeros",
                            root_dir=tmp_path))
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("Epoch: ")] == lines
    assert "Epoch: 1/2, Step 5/36| Inputs torch.Size([4, 13]) | Labels torch.Size([4])" in lines
    assert re.search(r"^142 36$", out, re.M)  # the lesson's print(total_samples, n_iterations)
    torch.testing.assert_close(_state(result)["net.lin.weight"], model.weight.detach(), rtol=0, atol=1e-4)


@pytest.mark.parametrize("spec,said", [
    ("broken_transform.Raises", "broken_transform.Raises fails on the first training sample (ValueError: "
                                "this transform always fails)"),
    ("broken_transform.Shrinks", "broken_transform.Shrinks gives"),
    ("broken_transform.Missing", "'broken_transform.Missing' cannot be built (AttributeError"),
])
def test_a_failing_transform_exits_2_naming_it_before_any_run_exists(spec, said, tmp_path):
    (tmp_path / "broken_transform.py").write_text(
        "class Raises:\n"
        "    def __call__(self, sample):\n"
        "        raise ValueError('this transform always fails')\n\n"
        "class Shrinks:\n"
        "    def __call__(self, sample):\n"
        "        return sample[0][:2], sample[1]\n"
    )
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", ""), *sys.path])
    proc = run_script("train.py", "experiment=course_dataloader", f"data.transforms=[ToTensor,{spec}]",
                      cwd=tmp_path, env={"PYTHONPATH": path})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert said in out and "Traceback" not in out
    assert sorted(p.name for p in Path(tmp_path).iterdir() if p.name != "__pycache__") == ["broken_transform.py"]


def test_the_dataloader_is_refused_under_ddp():
    with pytest.raises(ConfigError, match="data.loader=dataloader cannot run with trainer.strategy=ddp"):
        check(make_cfg("data.loader=dataloader", "trainer=ddp_cpu"))


@pytest.mark.parametrize("overrides", [
    ["experiment=course_dataloader"],
    ["data=toy", "data.loader=dataloader", 'data.transforms=[ToTensor,"MulTransform(2)"]'],
], ids=["course_dataloader", "toy_with_transforms"])
def test_the_dataloader_path_runs_with_fast_dev_run(overrides, tmp_path):
    result = train(make_cfg(*overrides, "trainer.fast_dev_run=true", root_dir=tmp_path))
    assert result.status == "finished"


def test_wine_through_the_dataloader_serves_the_stored_standardised_rows():
    """One standardisation: the Dataset reads the very rows the in-memory batches are cut from."""
    dm = WineDataModule(split="train_test_split", val_fraction=0.0, test_fraction=0.2, seed=1234,
                        loader="dataloader", batch_size=4)
    dm.setup("fit")
    dataset = dm.train_dataloader().dataset
    torch.testing.assert_close(dataset.x, WineDataset().x, rtol=0, atol=1e-6)  # sklearn's StandardScaler
    assert dataset.x is dm.splits["train"][0]
