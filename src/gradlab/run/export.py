"""The course's lesson 17, for a trained run: its model as a plain `nn.Sequential`'s flat state_dict
(tensors only, so `torch.load(..., weights_only=True)` reads it), the layers each lesson model names
itself (`plain_layers()`), and the lines of plain PyTorch that
rebuild that model, load the file and predict as predict.py does (the standardisation as literals, the
class names). `scripts/export.py` is a thin Hydra wrapper around `export(cfg)`.

Why not the lesson's `torch.save(model)`: a whole pickled model needs gradlab (and Lightning) to load
again, and since torch 2.6 `torch.load` refuses it by default (weights_only=True); a state_dict does not.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from gradlab.lessons.csvfile import DataError
from gradlab.run import rundirs, signals
from gradlab.run.evaluate import find_checkpoint, restore
from gradlab.run.files import atomic_file


def export(cfg: DictConfig) -> Path:
    """Writes the run's model as a plain state_dict to cfg.output (default: model.pt in the run's folder)
    and prints the plain PyTorch lines that load it. Returns the file written."""
    signals.raise_from_now_on()
    path = find_checkpoint(cfg.ckpt_path, cfg.root_dir, cfg.name)
    restored = restore(path)
    out = Path(cfg.output) if cfg.output else (rundirs.run_dir_of(path) or path.parent) / "model.pt"
    if out.is_dir():
        raise DataError(f"output={cfg.output}: that is a directory; give the file to write, e.g. "
                        f"output={out / 'model.pt'}")
    plain = restored.model.plain_layers().eval()  # each lesson says what its plain PyTorch layers are
    with atomic_file(out, "wb") as f:  # a whole file or none
        torch.save(plain.state_dict(), f)
    print(loading_code(plain, restored.model, restored.dm, out))
    print(f"gradlab: the model of {path} written to {out} ({sum(p.numel() for p in plain.parameters()):,} "
          "parameters, a state_dict of tensors)")
    return out


def loading_code(plain: nn.Sequential, model, dm, file: Path) -> str:
    """The lines of plain PyTorch that rebuild `plain`, load `file` and predict from raw inputs."""
    layers = "\n".join(f"    nn.{layer!r}," for layer in plain)
    n_features = model.hparams.n_features
    lines = ["import torch", "from torch import nn", "", "model = nn.Sequential(", layers, ")",
             f"model.load_state_dict(torch.load({str(file)!r}, weights_only=True))", "model.eval()"]
    mean, std = dm.x_mean, dm.x_std
    if mean is not None:
        lines += ["# the training split's standardisation: the model takes (raw - mean) / std",
                  f"mean = {_tensor(mean)}", f"std = {_tensor(std)}"]
    else:
        lines += ["mean, std = 0.0, 1.0  # the model takes the raw inputs as they are"]
    classes = getattr(dm, "classes", None)
    if classes is not None:
        lines.append(f"classes = {[str(c) for c in classes]!r}")
    lines += ["", "", "def predict(x):",
              f'    """Raw inputs, a (N, {n_features}) float tensor -> '
              + ('(class names, probabilities)."""' if model.task == "classification" else 'predictions (N,)."""'),
              "    with torch.no_grad():", "        output = model((x - mean) / std)"]
    if model.task == "regression":
        lines.append("    return output[:, 0]")
    else:
        if isinstance(plain[-1], nn.Sigmoid):  # logistic regression: the probability of class 1
            lines.append("    p = torch.cat([1 - output, output], 1)")
        else:
            lines.append("    p = torch.softmax(output, 1)")
        lines += ["    probability, index = p.max(1)", "    return [classes[i] for i in index], probability"]
    return "\n".join(lines)


def _tensor(values) -> str:
    values = [float(v) for v in values]
    if len(set(values)) == 1:
        return f"torch.full(({len(values)},), {values[0]!r})"
    return f"torch.tensor({values!r})"
