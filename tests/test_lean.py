"""The speed-ups in gradlab.lean, gradlab.logger and gradlab.checkpoints do what Lightning's own
code does: the same fits are run with Lightning's originals and with them, and compared."""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
import time
from pathlib import Path
from unittest.mock import Mock

import lightning.pytorch as L
import pytest
import torch
from lightning.pytorch import Callback, callbacks, loggers
from lightning.pytorch.core import hooks
from lightning.pytorch.loops.optimization.automatic import ClosureResult
from lightning.pytorch.trainer import call
from lightning.pytorch.trainer.connectors.logger_connector.result import _Metadata, _ResultMetric, _Sync
from lightning.pytorch.utilities.model_helpers import is_overridden as lightning_overridden
from lightning.pytorch.utilities.signature_utils import is_param_in_hook_signature as lightning_answer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gradlab import lean
from gradlab.checkpoints import ModelCheckpoint
from gradlab.data import ToyDataModule
from gradlab.logger import TensorBoardLogger
from gradlab.models import LinearRegressor

lean.apply()


def _model() -> LinearRegressor:
    return LinearRegressor(n_features=1, optimizer=lambda p: torch.optim.SGD(p, lr=0.01))


def _fit(callbacks_: list, profiler=None, **trainer_kwargs) -> L.Trainer:
    torch.manual_seed(0)
    settings = {"max_epochs": 4, "enable_checkpointing": False, **trainer_kwargs}
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, callbacks=callbacks_, profiler=profiler or lean.NoProfiler(),
                        **settings)
    trainer.fit(_model(), datamodule=ToyDataModule(batch_size=2))
    return trainer


@pytest.fixture
def lightning_originals(monkeypatch):
    """Lightning's own code in place of every lean fix, for the duration of a test."""
    def use() -> None:
        monkeypatch.setattr(call, "_call_callback_hooks", lean.ORIGINAL["callback_hooks"])
        monkeypatch.setattr(call, "_call_lightning_module_hook", lean.ORIGINAL["module_hook"])
        monkeypatch.setattr(call, "_call_strategy_hook", lean.ORIGINAL["strategy_hook"])
        monkeypatch.setattr(_ResultMetric, "to", lean.ORIGINAL["to"])
        monkeypatch.setattr(_ResultMetric, "reset", lean.ORIGINAL["reset"])
        monkeypatch.setattr(hooks, "move_data_to_device", lean.ORIGINAL["move_data_to_device"])
        lightning_closure_result = classmethod(lean.ORIGINAL["closure_result"])
        monkeypatch.setattr(ClosureResult, "from_training_step_output", lightning_closure_result)
        for cls in lean.STAGE_ENUMS:
            monkeypatch.setattr(cls, "__eq__", lean.ORIGINAL[f"{cls.__name__}.__eq__"])
        for namespace in lean.PATCHED_MODULES["is_overridden"]:
            monkeypatch.setattr(namespace, "is_overridden", lean.ORIGINAL["is_overridden"])
        for namespace in lean.PATCHED_MODULES["is_param_in_hook_signature"]:
            monkeypatch.setattr(namespace, "is_param_in_hook_signature", lean.ORIGINAL["signature"])
    return use


class Recorder(Callback):
    """Notes every hook it implements, and the hook name the LightningModule sees meanwhile."""

    def __init__(self):
        self.calls: list[tuple[str, str | None]] = []

    def _note(self, hook: str, pl_module) -> None:
        self.calls.append((hook, pl_module._current_fx_name))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._note("on_train_batch_start", pl_module)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self._note("on_before_optimizer_step", pl_module)

    def on_train_epoch_end(self, trainer, pl_module):
        self._note("on_train_epoch_end", pl_module)

    def on_validation_end(self, trainer, pl_module):
        self._note("on_validation_end", pl_module)


def _recorded_fit() -> list:
    recorder, seen = Recorder(), []
    lam = callbacks.LambdaCallback(on_after_backward=lambda trainer, module: seen.append(module._current_fx_name))
    trainer = _fit([recorder, lam])
    weights = [p.detach().clone() for p in trainer.lightning_module.parameters()]
    return [recorder.calls, seen, weights]


def test_callback_and_module_hooks_are_called_as_lightning_calls_them(lightning_originals):
    lean_run = _recorded_fit()
    lightning_originals()
    lightning_run = _recorded_fit()
    assert lean_run[0] and lean_run[1], "the recording callbacks were never called"
    assert lean_run[0] == lightning_run[0]  # same hooks, same order, same _current_fx_name
    assert lean_run[1] == lightning_run[1]  # a LambdaCallback's instance attribute counts as a hook
    for ours, theirs in zip(lean_run[2], lightning_run[2]):
        assert torch.equal(ours, theirs)


def test_every_callback_method_the_dispatch_skips_is_empty():
    # The dispatch skips Callback's own methods. If a Lightning release gives one a body, this fails.
    for name, method in vars(Callback).items():
        if callable(method) and not name.startswith("_"):
            body = ast.parse(textwrap.dedent(inspect.getsource(method))).body[0].body
            code = [s for s in body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
            assert all(isinstance(s, ast.Pass) or ast.unparse(s) == "return {}" for s in code), name


def test_a_profiler_still_sees_every_hook():
    trainer = _fit([Recorder()], profiler="simple", max_epochs=1)
    actions = set(trainer.profiler.recorded_durations)
    assert "[Callback]Recorder.on_before_backward" in actions  # an empty hook: Lightning's dispatch ran


def test_result_metric_to_is_lightnings_when_something_moves():
    metric = _ResultMetric(_Metadata(fx="training_step", name="loss"), is_tensor=True)
    metric.update(torch.tensor(2.0), batch_size=1)
    cpu = torch.device("cpu")
    assert lean.result_metric_to(metric, cpu) is metric
    assert metric.value.device == cpu and float(metric.value) == 2.0
    moved = lean.result_metric_to(metric, torch.device("meta"))  # not home: Lightning's own move
    assert moved.value.device.type == "meta" and moved.cumulated_batch_size.device.type == "meta"


def test_result_metric_reset_leaves_what_lightnings_leaves():
    states = []
    for reset in (lean.result_metric_reset, lean.ORIGINAL["reset"]):
        meta = _Metadata(fx="training_step", name="loss", on_step=True, on_epoch=False)
        meta.sync = _Sync()
        metric = _ResultMetric(meta, is_tensor=True)
        metric.forward(torch.tensor(3.0), batch_size=2)  # as self.log does: state and forward cache set
        assert metric._forward_cache is not None
        reset(metric)
        states.append(metric.__dict__)
    ours, theirs = states
    assert ours.keys() == theirs.keys()
    for key in theirs:  # a torchmetrics release that resets more fails here
        same = torch.equal(ours[key], theirs[key]) if isinstance(theirs[key], torch.Tensor) else (
            key in ("meta", "update", "compute", "_update_signature") or ours[key] == theirs[key])
        assert same, key


def _steps(batch, batch_idx): ...
def _batch_only(batch): ...
def _varargs(*args): ...
def _named(self, batch, idx, dataloader_iter): ...


@pytest.mark.parametrize("fx", [_steps, _batch_only, _varargs, _named, LinearRegressor.training_step,
                                _model().training_step])
@pytest.mark.parametrize("question", [("batch_idx", False, 2), ("dataloader_iter", True, None),
                                      ("dataloader_idx", False, None)])
def test_cached_signature_answers_are_lightnings(fx, question):
    assert lean.is_param_in_hook_signature(fx, *question) == lightning_answer(fx, *question)
    assert lean.is_param_in_hook_signature(fx, *question) == lightning_answer(fx, *question)  # cached


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_logger_writes_the_scalars_lightnings_writes(tmp_path):
    metrics = [({"train/loss": torch.tensor(0.25), "epoch": 3}, 9), ({"val/r2": 0.5, "val/mae": 1.5}, 19)]
    for cls, where in ((TensorBoardLogger, "ours"), (loggers.TensorBoardLogger, "lightning")):
        logger = cls(save_dir=str(tmp_path / where), name="", version="")
        for values, step in metrics:
            logger.log_metrics(values, step)
        logger.finalize("success")
    ours, theirs = _scalars(tmp_path / "ours"), _scalars(tmp_path / "lightning")
    assert ours == theirs and set(ours) == {"train/loss", "epoch", "val/r2", "val/mae"}


def test_logger_flushes_at_most_every_save_every_s_and_always_at_the_end(tmp_path):
    flushes = {}
    for every in (3600, 0):
        logger = TensorBoardLogger(save_dir=str(tmp_path / str(every)), name="", version="", save_every_s=every)
        flush, counted = logger.experiment.flush, flushes.setdefault(every, [])
        logger.experiment.flush = lambda flush=flush, counted=counted: (counted.append(1), flush())
        for step in range(3):
            logger.log_metrics({"train/loss": 1.0 / (step + 1)}, step)
            logger.save()  # Lightning calls it after every logging step
        assert len(flushes[every]) == (1 if every else 3)
        logger.finalize("success")
        assert [s for s, _ in _scalars(tmp_path / str(every))["train/loss"]] == [0, 1, 2]


def test_logger_holds_events_until_a_save_writes_them_with_the_time_they_were_logged(tmp_path):
    for every in (3600, 0):
        run_dir = tmp_path / str(every)
        logger = TensorBoardLogger(save_dir=str(run_dir), name="", version="", save_every_s=every)
        logger.save()  # the first save writes; with 3600, the next ones in the hour do not
        logged_from = time.time()
        logger.log_metrics({"train/loss": 0.5}, 9)
        logged_to = time.time()
        time.sleep(0.2)
        logger.save()
        assert ("train/loss" in _scalars(run_dir)) == (every == 0)
        logger.finalize("success")
        (event,) = EventAccumulator(str(run_dir)).Reload().Scalars("train/loss")
        assert event.step == 9 and event.value == 0.5
        assert logged_from <= event.wall_time <= logged_to  # not the time of the write, 0.2 s later


@pytest.mark.parametrize("settings", [
    {"monitor": "val/loss", "save_top_k": -1, "every_n_epochs": 2, "filename": "{epoch}"},
    {"every_n_epochs": 3, "filename": "last", "enable_version_counter": False},
    {"monitor": "val/loss", "save_top_k": 1, "every_n_epochs": 1, "save_last": True, "filename": "{epoch}"},
])
def test_model_checkpoint_saves_what_lightnings_saves(tmp_path, settings):
    saved = {}
    for cls, where in ((ModelCheckpoint, "ours"), (callbacks.ModelCheckpoint, "lightning")):
        ckpt = cls(dirpath=tmp_path / where, **settings)
        _fit([ckpt], max_epochs=6, check_val_every_n_epoch=1, enable_checkpointing=True,
             default_root_dir=tmp_path)
        saved[where] = sorted(p.name for p in (tmp_path / where).iterdir())
    assert saved["ours"] == saved["lightning"] and saved["ours"]


def test_gradient_clipping_still_clips():
    torch.manual_seed(0)
    model = LinearRegressor(n_features=1, optimizer=lambda p: torch.optim.SGD(p, lr=1.0))
    before = [p.detach().clone() for p in model.parameters()]
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0,
                        limit_val_batches=0, gradient_clip_val=1e-3, profiler=lean.NoProfiler())
    trainer.fit(model, datamodule=ToyDataModule())
    step = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before)])
    assert 0 < step.norm() <= 1e-3 * (1 + 1e-5)  # lr 1 times a gradient clipped to norm 1e-3


@pytest.mark.parametrize("enum", lean.STAGE_ENUMS)
def test_trainer_states_compare_as_lightnings(enum):
    original = lean.ORIGINAL[f"{enum.__name__}.__eq__"]
    assert enum.__eq__ is not original  # apply() installed the identity fast path
    others = [member for cls in lean.STAGE_ENUMS for member in cls] + ["train", "TRAIN", "Fit", "x", None, 3]
    for member in enum:
        for other in others:
            assert (member == other) == original(member, other), (member, other)
        assert hash(member) == hash(member.value.lower())  # dicts and sets keyed by them still work


class _Plain(L.LightningModule):
    def training_step(self, batch, batch_idx): ...


class _Transfers(_Plain):
    def transfer_batch_to_device(self, batch, device, dataloader_idx): return batch


def test_cached_is_overridden_is_lightnings():
    assert lightning_overridden is lean.ORIGINAL["is_overridden"]
    on_instance, mocked, partial_ = _Plain(), _Plain(), _Plain()
    on_instance.transfer_batch_to_device = lambda batch, device, idx: batch  # set on the object itself
    mocked.validation_step = Mock(wraps=_Transfers.transfer_batch_to_device)
    partial_.on_after_batch_transfer = functools.partial(_Transfers.transfer_batch_to_device, None)
    cases = [(name, obj) for obj in (_Plain(), _Transfers(), on_instance, mocked, partial_, ToyDataModule(),
                                     callbacks.LambdaCallback(on_fit_start=lambda trainer, module: None), None)
             for name in ("transfer_batch_to_device", "validation_step", "on_after_batch_transfer", "on_fit_start")
             if obj is None or hasattr(obj, name)]
    for name, obj in cases * 2:  # the second round answers from the cache
        assert lean.is_overridden(name, obj) == lightning_overridden(name, obj), (name, obj)
    assert lean.is_overridden("transfer_batch_to_device", on_instance) is True
    assert lean.is_overridden("transfer_batch_to_device", _Plain()) is False
    # a class changed during a run is a new key, not a stale answer
    _Plain.transfer_batch_to_device = _Transfers.transfer_batch_to_device
    try:
        assert lean.is_overridden("transfer_batch_to_device", _Plain()) is True
    finally:
        del _Plain.transfer_batch_to_device
    assert lean.is_overridden("transfer_batch_to_device", _Plain()) is False


@pytest.mark.parametrize("output, normalize", [
    ("float", 1), ("float", 2), ("double", 1), ("dict", 1), ("int", 1), (None, 1)])
def test_closure_result_is_lightnings(output, normalize):
    results, grads = [], []
    for make in (lean.closure_result, lean.ORIGINAL["closure_result"]):
        dtype = torch.float64 if output == "double" else torch.float32
        w = torch.tensor([0.3, -1.7], dtype=dtype, requires_grad=True)
        loss = ((w * 3.1) ** 2).sum()
        value = {"float": loss, "double": loss, "dict": {"loss": loss, "n": 4}, "int": torch.tensor(7), None: None}
        results.append(make(ClosureResult, value[output], normalize))
        if output not in ("int", None):
            results[-1].closure_loss.backward()
            grads.append(w.grad)
    ours, theirs = results
    for field in ("closure_loss", "loss"):
        a, b = getattr(ours, field), getattr(theirs, field)
        assert (a is None and b is None) or (torch.equal(a, b) and a.dtype == b.dtype), field
    assert ours.extra == theirs.extra
    if grads:
        assert torch.equal(grads[0], grads[1])  # the same gradient, bit for bit


def _leaves(batch) -> list:
    if isinstance(batch, dict):
        return [leaf for value in batch.values() for leaf in _leaves(value)]
    if isinstance(batch, (tuple, list)):
        return [leaf for value in batch for leaf in _leaves(value)]
    return [batch]


def test_batches_already_on_the_device_are_lightnings():
    x = torch.arange(6.0).reshape(3, 2)
    batches = [(x, x[:, :1]), [x, x], (x, {"y": x}), (x, 3), x, (x.double(), x), ()]
    lightning_move = lean.ORIGINAL["move_data_to_device"]
    for batch in batches:
        for device in (torch.device("cpu"), "cpu", torch.device("meta")):
            ours, theirs = lean.move_data_to_device(batch, device), lightning_move(batch, device)
            assert type(ours) is type(theirs) and len(_leaves(ours)) == len(_leaves(theirs))
            for a, b, given in zip(_leaves(ours), _leaves(theirs), _leaves(batch)):
                assert type(a) is type(b) and (a is given) == (b is given)  # the same objects kept
                if isinstance(b, torch.Tensor):
                    assert a.device == b.device and a.dtype == b.dtype and a.shape == b.shape
    assert lean.move_data_to_device(batches[0], torch.device("cpu")) is batches[0]  # nothing rebuilt
