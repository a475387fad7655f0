"""Your own CSV from the command line to predictions, and the developer conveniences: ruff through
`make lint` and pre-commit, and the slow marker that keeps the default suite quick."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest
from conftest import run_script


def test_own_csv_trains_with_chosen_features_and_predicts_raw_rows(tmp_path):
    rng = np.random.default_rng(0)
    size, age = rng.normal(50, 10, 60), rng.normal(20, 5, 60)  # raw units: standardisation matters
    price = 3 * size - 2 * age + 1 + rng.normal(0, 0.1, 60)
    rows = [f"{i},{s:.6f},{a:.6f},{p:.6f}" for i, (s, a, p) in enumerate(zip(size, age, price))]
    (tmp_path / "houses.csv").write_text("id,size,age,price\n" + "\n".join(rows) + "\n")

    trained = run_script("train.py", "data=csv", "data.path=houses.csv", "data.target=price",
                         "data.features=[size,age]", "optimizer.lr=0.1", "trainer.max_epochs=300",
                         "predict_x=[[50,20]]", "print_config=false", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    printed = float(re.search(r"Prediction after training: f\(\[50, 20\]\) = (\S+)", trained.stdout).group(1))
    assert printed == pytest.approx(3 * 50 - 2 * 20 + 1, abs=0.1)  # the line the data was made from

    # new rows in raw units, columns in another order, an extra column: picked by name
    (tmp_path / "new.csv").write_text("age,note,size\n20,a,50\n10,b,60\n")
    predicted = run_script("predict.py", "input=new.csv", "output=priced.csv", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    with open(tmp_path / "priced.csv", newline="") as f:
        out = list(csv.DictReader(f))
    assert [(r["age"], r["note"], r["size"]) for r in out] == [("20", "a", "50"), ("10", "b", "60")]
    assert float(out[0]["prediction"]) == pytest.approx(printed, rel=1e-6)  # what train.py printed
    assert float(out[1]["prediction"]) == pytest.approx(3 * 60 - 2 * 10 + 1, abs=0.1)
