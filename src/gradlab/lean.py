"""Lightning's per-step bookkeeping, made cheaper without changing what Lightning does.

A step of the journal's model (forward, loss, backward, SGD step) takes about 60 us; Lightning
2.6 adds about 250 us of Python around it, spread over dozens of small costs. The ones below
were found with a sampling profiler (py-spy) and measured with scripts/benchmark.py; each
returns exactly what Lightning's own code returns (tests/test_lean.py checks them against it):

- `NoProfiler`: Lightning wraps every hook call (about 40 a step) in `profiler.profile(name)`,
  a generator-based context manager that costs ~0.5 us even when it profiles nothing.
- `_ResultMetric.to`: every `self.log` first moves its stored result to the value's device by
  walking the whole object (a torchmetrics Metric, ~45 attributes): ~130 us a call, half the
  cost of `self.log`, even when everything is already on that device.
- `_ResultMetric.reset`: each logged key is reset every epoch, through torchmetrics' `Metric.reset`,
  whose seven attribute writes each pass `nn.Module.__setattr__`'s checks (~12 us an epoch). The
  same writes go straight into the instance.
- `is_param_in_hook_signature`: asked on every step (does `training_step` take `batch_idx`?)
  and on every `self.log` in training; it runs `inspect.getfullargspec` each time (~10 us).
  A method's signature does not change during a run, so the answer is cached per function.
- `_call_callback_hooks`: Lightning calls each of ~10 hooks a step on every callback, also
  the hooks a callback leaves as `Callback`'s empty method (~1 us each; 6 callbacks here).
  Those calls do nothing, so they are skipped (all calls go through when a profiler is on,
  so its report still lists every hook).
- `_call_lightning_module_hook` and `_call_strategy_hook`: about 20 calls a step, each formatting
  a debug message and a profiler label first; without a profiler or debug logging, the hook is
  just called.
- `is_overridden` (does the model or datamodule override this hook?): asked several times a step
  (which object's `transfer_batch_to_device` to call, is there a `validation_step`), each time
  unwrapping and comparing code objects. The answer is cached per (class, the class's method);
  an object that sets the method on itself is asked every time, as Lightning does.
- `ClosureResult.from_training_step_output`: Lightning divides the loss by
  `accumulate_grad_batches` on every step, also when that is 1: one more op forward and one more
  node in the backward pass, ~5 us. x / 1 is x exactly for a floating-point tensor, so by 1 the
  loss is used as it is; anything else goes to Lightning's code.
- `move_data_to_device` (the default `transfer_batch_to_device`): walks the batch with
  `apply_to_collection` every step, calling `.to(device)` on tensors already there (~6 us). A plain
  tuple of tensors already on the device is returned as it is (`.to` would return each tensor
  itself); anything else goes to Lightning's walk.
- The trainer's stage checks (`trainer.training`, ~10 a step): Lightning's enums compare as
  lower-cased strings (~1 us each). Two members of the same enum are equal only if they are the
  same member (their lower-cased values differ), so that case is answered by identity; anything
  else (a string, another enum) is compared as before.

`apply()` installs them once per process (train() calls it). They are written against
lightning 2.6 (pinned <2.7 in pyproject.toml); tests/test_lean.py runs the same fits with
Lightning's originals and with these and compares what happened.
"""

from __future__ import annotations

import functools
import logging
from contextlib import nullcontext

import torch
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import Checkpoint, EarlyStopping
from lightning.pytorch.core import hooks
from lightning.pytorch.core import module as module_mod
from lightning.pytorch.loops import evaluation_loop, fit_loop, training_epoch_loop
from lightning.pytorch.loops import utilities as loop_utilities
from lightning.pytorch.loops.optimization import automatic
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.trainer import call, states
from lightning.pytorch.trainer import trainer as trainer_mod
from lightning.pytorch.trainer.connectors import data_connector
from lightning.pytorch.trainer.connectors.logger_connector import result
from lightning.pytorch.utilities import model_helpers

STAGE_ENUMS = (states.TrainerStatus, states.TrainerFn, states.RunningStage)
PATCHED_MODULES = {  # the modules whose imported name is replaced (the ones that call it every step)
    "is_param_in_hook_signature": (module_mod, training_epoch_loop, evaluation_loop, loop_utilities),
    "is_overridden": (trainer_mod, data_connector, evaluation_loop, fit_loop, call),
}

ORIGINAL = {  # Lightning's own versions: tests compare against them, profiling falls back to them
    "to": result._ResultMetric.to,
    "reset": result._ResultMetric.reset,
    "signature": module_mod.is_param_in_hook_signature,
    "callback_hooks": call._call_callback_hooks,
    "module_hook": call._call_lightning_module_hook,
    "strategy_hook": call._call_strategy_hook,
    "is_overridden": model_helpers.is_overridden,
    "closure_result": automatic.ClosureResult.from_training_step_output.__func__,
    "move_data_to_device": hooks.move_data_to_device,
    **{f"{cls.__name__}.__eq__": cls.__eq__ for cls in STAGE_ENUMS},
}


class NoProfiler(PassThroughProfiler):
    """Lightning's default profiler without its cost: one shared no-op context for every hook.
    `trainer.profiler=simple` still profiles."""

    _idle = nullcontext()

    def profile(self, action_name: str) -> nullcontext:
        return self._idle


def result_metric_to(self, *args, **kwargs):
    """`_ResultMetric.to(device)`: nothing to move when its tensors are already on `device`."""
    if len(args) == 1 and not kwargs and isinstance(args[0], torch.device):
        state = self.__dict__
        value, count = state.get("value"), state.get("cumulated_batch_size")
        if (isinstance(value, torch.Tensor) and value.device == args[0]
                and (count is None or (isinstance(count, torch.Tensor) and count.device == args[0]))):
            return self
    return ORIGINAL["to"](self, *args, **kwargs)


def result_metric_reset(self) -> None:
    """`_ResultMetric.reset()` (torchmetrics' `Metric.reset` for a logged tensor): the same fields
    set to the same values, written to the instance directly instead of through
    `nn.Module.__setattr__`, which checks for parameters, buffers and modules at each one."""
    defaults = self._defaults
    if not self.is_tensor or not all(isinstance(d, torch.Tensor) for d in defaults.values()):
        return ORIGINAL["reset"](self)
    state = self.__dict__
    state["_update_count"] = 0
    state["_forward_cache"] = None
    state["_computed"] = None
    for attr, default in defaults.items():
        state[attr] = default.detach().clone().to(state[attr].device)
    state["_cache"] = None
    state["_is_synced"] = False
    state["has_reset"] = True
    return None


@functools.lru_cache(maxsize=256)
def _signature_answer(fx, param: str, explicit: bool, min_args) -> bool:
    return ORIGINAL["signature"](fx, param, explicit, min_args)


def is_param_in_hook_signature(hook_fx, param: str, explicit: bool = False, min_args: int | None = None) -> bool:
    """Lightning's answer, asked once per (function, question): a bound method is keyed by its
    function, so every step of a run asks about the same one."""
    fx = getattr(hook_fx, "__func__", hook_fx)
    try:
        return _signature_answer(fx, param, explicit, min_args)
    except TypeError:  # an unhashable callable: ask Lightning every time
        return ORIGINAL["signature"](hook_fx, param, explicit, min_args)


@functools.cache
def inherited_empty_hooks(cls: type) -> frozenset[str]:
    """The methods of Callback (all empty) that `cls` inherits without overriding."""
    return frozenset(name for name, method in vars(Callback).items()
                     if callable(method) and not name.startswith("_") and getattr(cls, name, None) is method)


def call_callback_hooks(trainer, hook_name: str, *args, monitoring_callbacks: bool | None = None, **kwargs):
    """Lightning's `_call_callback_hooks` (same order, same `_current_fx_name`), minus the calls to
    callbacks whose `hook_name` is `Callback`'s empty method."""
    if not isinstance(trainer.profiler, NoProfiler) or call.log.isEnabledFor(logging.DEBUG):
        return ORIGINAL["callback_hooks"](trainer, hook_name, *args, monitoring_callbacks=monitoring_callbacks,
                                          **kwargs)
    pl_module = trainer.lightning_module
    if pl_module:
        prev_fx_name = pl_module._current_fx_name
        pl_module._current_fx_name = hook_name
    callbacks = trainer.callbacks
    if monitoring_callbacks is True:
        callbacks = [cb for cb in callbacks if isinstance(cb, (EarlyStopping, Checkpoint))]
    elif monitoring_callbacks is False:
        callbacks = [cb for cb in callbacks if not isinstance(cb, (EarlyStopping, Checkpoint))]
    for callback in callbacks:
        if hook_name in inherited_empty_hooks(type(callback)) and hook_name not in callback.__dict__:
            continue  # Callback's empty method (an instance attribute, as LambdaCallback sets, counts)
        fn = getattr(callback, hook_name)
        if callable(fn):
            fn(trainer, trainer.lightning_module, *args, **kwargs)
    if pl_module:
        pl_module._current_fx_name = prev_fx_name
    return None


def call_lightning_module_hook(trainer, hook_name: str, *args, pl_module=None, **kwargs):
    """Lightning's `_call_lightning_module_hook` (about 15 calls a step) without formatting a debug
    message and a profiler label that nobody reads."""
    if not isinstance(trainer.profiler, NoProfiler) or call.log.isEnabledFor(logging.DEBUG):
        return ORIGINAL["module_hook"](trainer, hook_name, *args, pl_module=pl_module, **kwargs)
    pl_module = pl_module or trainer.lightning_module
    if pl_module is None:
        raise TypeError("No `LightningModule` is available to call hooks on.")
    fn = getattr(pl_module, hook_name)
    if not callable(fn):
        return None
    prev_fx_name = pl_module._current_fx_name
    pl_module._current_fx_name = hook_name
    output = fn(*args, **kwargs)
    pl_module._current_fx_name = prev_fx_name
    return output


def call_strategy_hook(trainer, hook_name: str, *args, **kwargs):
    """Lightning's `_call_strategy_hook` (training_step, backward, ...), the same way."""
    if not isinstance(trainer.profiler, NoProfiler) or call.log.isEnabledFor(logging.DEBUG):
        return ORIGINAL["strategy_hook"](trainer, hook_name, *args, **kwargs)
    pl_module = trainer.lightning_module
    prev_fx_name = pl_module._current_fx_name
    pl_module._current_fx_name = hook_name
    fn = getattr(trainer.strategy, hook_name)
    if not callable(fn):
        return None
    output = fn(*args, **kwargs)
    pl_module._current_fx_name = prev_fx_name
    return output


_overridden: dict[tuple, bool] = {}


def is_overridden(method_name: str, instance: object | None = None, parent: type | None = None) -> bool:
    """Lightning's answer, asked once per (method, class, parent, the class's method): it depends on
    nothing else unless the instance carries the method itself."""
    if instance is None or method_name in getattr(instance, "__dict__", ()):
        return ORIGINAL["is_overridden"](method_name, instance, parent)
    cls = type(instance)
    key = (method_name, cls, parent, getattr(cls, method_name, None))
    try:
        return _overridden[key]
    except KeyError:
        answer = _overridden[key] = ORIGINAL["is_overridden"](method_name, instance, parent)
        return answer
    except TypeError:  # an unhashable class attribute: ask Lightning every time
        return ORIGINAL["is_overridden"](method_name, instance, parent)


def closure_result(cls, output, normalize: int = 1):
    """`ClosureResult.from_training_step_output`: a floating-point loss divided by 1 is itself."""
    if normalize == 1 and isinstance(output, torch.Tensor) and output.is_floating_point():
        return cls(output)
    return ORIGINAL["closure_result"](cls, output, normalize)


def move_data_to_device(batch, device):
    """Lightning's `move_data_to_device`, with nothing to walk when a tuple of tensors is already there."""
    if (type(batch) is tuple and isinstance(device, torch.device)
            and all(type(t) is torch.Tensor and t.device == device for t in batch)):
        return batch
    return ORIGINAL["move_data_to_device"](batch, device)


def stage_eq(original):
    """`__eq__` for a trainer-state enum: two of its members by identity, anything else as before."""
    def __eq__(self, other: object) -> bool:
        if type(other) is type(self):
            return self is other
        return original(self, other)
    return __eq__


@functools.cache
def apply() -> None:
    """Installs the fixes above (once; later calls do nothing)."""
    result._ResultMetric.to = result_metric_to
    result._ResultMetric.reset = result_metric_reset
    for namespace in PATCHED_MODULES["is_param_in_hook_signature"]:
        namespace.is_param_in_hook_signature = is_param_in_hook_signature
    call._call_callback_hooks = call_callback_hooks
    call._call_lightning_module_hook = call_lightning_module_hook
    call._call_strategy_hook = call_strategy_hook
    automatic.ClosureResult.from_training_step_output = classmethod(closure_result)
    hooks.move_data_to_device = move_data_to_device
    for namespace in PATCHED_MODULES["is_overridden"]:
        namespace.is_overridden = is_overridden
    for cls in STAGE_ENUMS:
        # identity equals equality only if no two members' values are equal in lower case
        if len({member.value.lower() for member in cls}) == len(cls):
            cls.__eq__ = stage_eq(ORIGINAL[f"{cls.__name__}.__eq__"])
