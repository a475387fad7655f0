"""Loading checkpoints safely: torch.load(weights_only=True) only, so a malicious file cannot
run code, and a clear error for anything that is not a readable gradlab checkpoint."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from gradlab.cli import BadCheckpoint

REQUIRED = ("state_dict", "hyper_parameters")


def load_checkpoint(path: str | Path) -> dict:
    """The checkpoint's contents as plain containers and tensors, or BadCheckpoint saying why."""
    p = Path(path)
    if not p.is_file():
        raise BadCheckpoint(f"ckpt_path={str(path)!r}: no such checkpoint file")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = str(e).strip().splitlines() or [type(e).__name__]
        first = next((ln.strip() for ln in lines if "Unsupported global" in ln), lines[0])
        raise BadCheckpoint(
            f"{p}: refused to load: it holds objects other than tensors and plain values "
            f"({first}). gradlab loads checkpoints with weights_only=True so that a file cannot run "
            "code; only load checkpoints written by gradlab"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BadCheckpoint(
            f"{p}: not a readable checkpoint (corrupt or truncated? {first}); "
            "use another checkpoint of the run, e.g. checkpoints/last.ckpt"
        ) from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED):
        raise BadCheckpoint(f"{p}: not a gradlab checkpoint (it lacks {', '.join(REQUIRED)})")
    return ckpt
