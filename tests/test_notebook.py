"""notebooks/journal.ipynb runs top to bottom in a fresh kernel (nbclient), and shows what the
journal's own code gives: f(7) and f(5), the pictures inline, and a table of the runs."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "journal.ipynb"


def _text(cell) -> str:
    return "".join(o.get("text", "") + "".join(o.get("data", {}).get("text/plain", ""))
                   for o in cell.get("outputs", []))


def test_the_journal_notebook_runs_and_shows_the_journals_numbers_pictures_and_a_table(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()  # runs go under tmp_path
    code = [c for c in notebook.cells if c.cell_type == "code"]
    text = "\n".join(_text(c) for c in code)
    assert "f(7) = 13.978968" in text  # the journal's autograd loop (README, "Journal")
    assert "f(5) = 416.475" in text  # the journal's regression
    pictures = [o for c in code for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(pictures) == 2  # the loss surface and the fit, inline
    assert "(82.4842" in _text(code[4])  # load_model: the journal's w = 82.484261 (README, "Journal")
    table = _text(code[-1])
    for lr in ("0.001", "0.01", "0.1"):
        assert lr in table
    runs = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("lightning_logs/*/version_*"))
    assert runs == ["lightning_logs/journal_autograd/version_0", "lightning_logs/journal_numpy/version_0",
                    *(f"lightning_logs/journal_regression/version_{i}" for i in range(4))]

