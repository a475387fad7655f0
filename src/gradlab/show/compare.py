"""Runs side by side: one row per run under root_dir, from what each run already wrote (result.json,
config.yaml, overrides.yaml), never from its event files or checkpoints, so a folder of hundreds of
runs is listed in a moment. `scripts/compare.py` prints it; `frame()` gives it to a notebook as a
pandas DataFrame.

The settings shown are those whose values differ between the listed runs: what the learner
changed, not the 60 keys every run shares.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import textwrap
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from gradlab.checks.config import ConfigError
from gradlab.run.files import atomic_file
from gradlab.run.rundirs import RESULT

# config keys that say where a run went or how it printed, not what it trained: never a column
NOT_SETTINGS = ("root_dir", "name", "print_config", "resume", "ckpt_path", "predict_x", "threads", "logger",
                "callbacks")
# result.json's numbers, as the columns show them
METRICS = {"train_loss": "train/loss", "val_loss": "val/loss", "test_loss": "test/loss", "test_r2": "test/r2",
           "test_accuracy": "test/accuracy", "test_mae": "test/mae", "test_f1": "test/f1"}
# the columns left out first when the table is wider than the terminal; then the settings, last first
LEAVE_OUT = ("ended", "test/f1", "test/mae", "seconds", "epochs", "test/accuracy", "test/r2", "test/loss")
KEEP = ("run", "status", "val/loss", "train/loss")  # never left out


def runs(root: str | Path = "lightning_logs", name: str | None = None, experiment: str | None = None,
         sweep: str | None = None) -> list[dict[str, Any]]:
    """Every run under `root` (a folder with a result.json), as {column: value}, oldest first.

    name: only runs of that name (`lightning_logs/<name>/...`); experiment: only runs started with
    `experiment=<it>`; sweep: only the jobs of that sweep folder (`default/sweep-1820`, or its path).
    """
    root = Path(root)
    found = []
    for result in sorted(root.rglob(RESULT)):
        run_dir = result.parent
        relative = run_dir.relative_to(root).as_posix()
        if name is not None and relative.split("/", 1)[0] != name:
            continue
        if sweep is not None and not _in_sweep(run_dir, root, sweep):
            continue
        row = _row(run_dir, relative)
        if experiment is not None and row["experiment"] != experiment:
            continue
        found.append(row)
    return sorted(found, key=lambda r: (str(r.get("ended") or ""), r["run"]))


def frame(root: str | Path = "lightning_logs", name: str | None = None, experiment: str | None = None,
          sweep: str | None = None, sort: str | None = None):
    """The same table as a pandas DataFrame, every differing setting and every number in full precision,
    indexed by run (e.g. `default/sweep-1820/lr=0.001`); sort: a column, lowest first."""
    import pandas as pd

    rows = runs(root, name, experiment, sweep)
    table = pd.DataFrame([_shown(r, _differing(rows)) for r in rows])
    if table.empty:
        return table
    table = table.set_index("run")
    return table.sort_values(_column(sort, list(table.columns)), na_position="last") if sort else table


def compare(cfg: DictConfig) -> list[dict[str, Any]]:
    """scripts/compare.py: prints the table within the terminal's width (80 columns when piped);
    with `output=` writes every column to a CSV file too."""
    rows = runs(cfg.root_dir, cfg.name, cfg.experiment, cfg.sweep)
    if not rows:
        where = " ".join(f"{k}={cfg[k]}" for k in ("name", "experiment", "sweep") if cfg[k] is not None)
        print(f"gradlab: no runs under {cfg.root_dir}{' with ' + where if where else ''}; "
              "train one with python scripts/train.py")
        return []
    settings = _differing(rows)
    table = [_shown(r, settings) for r in rows]
    columns = list(dict.fromkeys(k for r in table for k in r))
    if cfg.sort is not None:
        key = _column(cfg.sort, columns)
        table.sort(key=lambda r: (not _finite(r.get(key)), r.get(key) if _finite(r.get(key)) else 0))
    if cfg.top is not None:
        table = table[: cfg.top]
    if cfg.output is not None:
        with atomic_file(Path(cfg.output), "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(table)
    print(_text(table, columns, settings, shutil.get_terminal_size((80, 24)).columns))
    shown = f"{len(table)} of {len(rows)} runs" if len(table) < len(rows) else f"{len(rows)} runs"
    print(f"gradlab: {shown} under {cfg.root_dir}" + (f"; every column in {cfg.output}" if cfg.output else ""))
    return table


# ------------------------------------------------------------------ reading one run


def _row(run_dir: Path, relative: str) -> dict[str, Any]:
    result = _json(run_dir / RESULT)
    overrides = _yaml(run_dir / "overrides.yaml") or []
    experiment = next((o.split("=", 1)[1] for o in overrides if str(o).startswith("experiment=")), None)
    config = _yaml(run_dir / "config.yaml") or {}
    said = [str(o).split("=", 1)[0].lstrip("+~") for o in overrides]
    return {"run": relative, "status": result.get("status"), "experiment": experiment, "said": said,
            "settings": _settings(config), "ended": result.get("ended"), "epochs": result.get("epochs"),
            "seconds": result.get("seconds"), **{shown: result.get(key) for key, shown in METRICS.items()}}


def _settings(config: dict, prefix: str = "") -> dict[str, Any]:
    """{dotted key: value} of a config.yaml, a group's `_target_` shown as its class name under the
    group's own key (`optimizer: Adam`)."""
    out = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if not prefix and key in NOT_SETTINGS:
            continue
        if key == "_target_":
            out[prefix.rstrip(".")] = str(value).rsplit(".", 1)[-1]
        elif isinstance(value, dict):
            out |= _settings(value, dotted + ".")
        elif not key.startswith("_"):
            out[dotted] = value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
    return out


def _in_sweep(run_dir: Path, root: Path, sweep: str) -> bool:
    wanted = Path(sweep)
    folder = (wanted if wanted.is_absolute() or wanted.parts[: len(root.parts)] == root.parts else root / wanted)
    return run_dir.parent.resolve() == folder.resolve()


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _yaml(path: Path):
    try:
        return OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else None
    except Exception:  # a damaged file: the run is still listed, without it
        return None


# ------------------------------------------------------------------ the table


def _differing(rows: list[dict]) -> list[str]:
    """The settings whose values are not the same in every listed run: first those some run's command
    line set (what the learner changed, e.g. optimizer.lr), then the classes of the groups (data,
    model, optimizer), then the rest in config order. A narrow table keeps the first."""
    keys = list(dict.fromkeys(k for r in rows for k in r["settings"]))
    differing = [k for k in keys if len({json.dumps(r["settings"].get(k), sort_keys=True) for r in rows}) > 1]
    said = {k for r in rows for k in r["said"]}
    return sorted(differing, key=lambda k: (k not in said, "." in k))


def _shown(row: dict, settings: list[str]) -> dict[str, Any]:
    """A row's columns: run, status, the differing settings (short names), then the numbers."""
    short = _short_names(settings)
    out = {"run": row["run"], "status": row["status"]}
    out |= {short[k]: row["settings"].get(k) for k in settings}
    out |= {k: row[k] for k in (*METRICS.values(), "epochs", "seconds", "ended") if row.get(k) is not None}
    return out


def _short_names(keys: list[str]) -> dict[str, str]:
    """Each key by its last part (`optimizer.lr` -> `lr`) where that is unique among `keys`."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: s if last.count(s) == 1 and s not in (*KEEP, *LEAVE_OUT) else k for k, s in zip(keys, last)}


def _column(wanted: str, columns: list[str]) -> str:
    """The column `sort=` names (val/loss or val_loss), or ConfigError listing the ones there are."""
    for column in columns:
        if wanted in (column, column.replace("/", "_")):
            return column
    raise ConfigError(f"sort={wanted}: no such column in this table; allowed: {', '.join(columns)}. "
                      "Nothing was written.")


def _text(table: list[dict], columns: list[str], settings: list[str], width: int) -> str:
    """The rows as aligned text no wider than `width`: the run's name is cut in its middle to at
    most RUN_WIDTH, then the least needed columns are left out until the rest fits."""
    cells = {c: [c] + [_cell(r.get(c)) for r in table] for c in columns}
    size = {c: max(len(v) for v in cells[c]) for c in columns}
    size["run"] = min(size["run"], RUN_WIDTH)
    chosen = list(columns)
    least_needed = [c for c in LEAVE_OUT if c in columns] + [c for c in reversed(columns) if c not in
                                                              (*LEAVE_OUT, *KEEP)]
    for column in least_needed:
        if sum(size[c] + 2 for c in chosen) - 2 <= width:
            break
        chosen.remove(column)
    cells["run"] = [_middle_cut(v, size["run"]) for v in cells["run"]]
    lines = ["  ".join(cells[c][i].ljust(size[c]) for c in chosen).rstrip() for i in range(len(table) + 1)]
    lines = [line[:width] for line in lines]
    left_out = [c for c in columns if c not in chosen]
    if left_out:
        named = ", ".join(left_out[:6]) + (f" and {len(left_out) - 6} more" if len(left_out) > 6 else "")
        lines += textwrap.wrap(f"(not shown, to fit {width} columns: {named}; output=FILE.csv has them)", width)
    return "\n".join(lines)


RUN_WIDTH = 44  # `default/sweep-1820/lr=0.001,max_epochs=200` whole; longer names lose their middle


def _middle_cut(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "~" + text[len(text) - (width - 1 - head):]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return str(value)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
