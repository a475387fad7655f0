"""The journal's plot, headless: the fit (and for one-weight models the loss J(w) with the path
gradient descent took) saved as PNG in the run directory and logged to TensorBoard's Images tab,
every few epochs, so the step slider shows the line moving onto the data."""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import lightning.pytorch as L
import matplotlib.image
import numpy as np
import pytest
import torch
from conftest import make_cfg
from oracles import journal_loop
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gradlab.lessons.data import ToyDataModule
from gradlab.lessons.linear import LinearRegressor
from gradlab.run.recipe import train
from gradlab.show.pictures import FitPlots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path):
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_MAGIC
    height, width, channels = matplotlib.image.imread(path).shape  # decodes the whole image
    assert width > 100 and height > 100 and channels in (3, 4)


def _images(run_dir) -> dict[str, list]:
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0}).Reload()
    return {tag: events.Images(tag) for tag in events.Tags()["images"]}


def test_one_weight_run_saves_both_pngs_and_logs_the_fit_every_few_epochs(tmp_path):
    cfg = make_cfg("experiment=journal_autograd", "trainer.max_epochs=6", "callbacks.plots.every_n_epochs=2",
                   root_dir=tmp_path)
    run_dir = train(cfg).run_dir
    _assert_png(run_dir / "fit.png")
    _assert_png(run_dir / "loss_surface.png")

    images = _images(run_dir)
    assert set(images) == {"train/pictures/fit", "train/pictures/loss_surface"}
    fits = images["train/pictures/fit"]
    assert [e.step for e in fits] == [0, 2, 4, 6]  # before training, then every 2nd epoch (one step each)
    assert all(e.encoded_image_string[:8] == PNG_MAGIC for e in fits)
    assert len({e.encoded_image_string for e in fits}) == 4  # the line moves between steps
    assert [e.step for e in images["train/pictures/loss_surface"]] == [6]  # once, at the end


@pytest.mark.parametrize("experiment", ["journal_regression", "diabetes"])
def test_models_with_a_bias_or_several_features_get_the_fit_but_no_loss_surface(experiment, tmp_path):
    cfg = make_cfg(f"experiment={experiment}", "trainer.max_epochs=4", "callbacks.plots.every_n_epochs=2",
                   root_dir=tmp_path)
    run_dir = train(cfg).run_dir
    _assert_png(run_dir / "fit.png")
    assert not (run_dir / "loss_surface.png").exists()
    images = _images(run_dir)
    assert set(images) == {"train/pictures/fit"}
    assert [e.step for e in images["train/pictures/fit"]] == [0, 2, 4]


def test_plotting_is_headless_and_leaves_no_figure_open(tmp_path):
    import matplotlib.pyplot as plt

    plt.close("all")  # whatever earlier code left open
    train(make_cfg("experiment=journal_numpy", "trainer.max_epochs=3", root_dir=tmp_path))
    train(make_cfg("experiment=journal_numpy", "trainer.fast_dev_run=true", root_dir=tmp_path))
    assert matplotlib.get_backend().lower() == "agg"  # renders to files only: never a window
    assert plt.get_fignums() == []  # every figure closed once logged or saved


def test_loss_surface_draws_the_path_the_journals_gradient_descent_took(tmp_path):
    plots = FitPlots(every_n_epochs=0)  # 0: pictures at the end only
    model = LinearRegressor(1, optimizer=partial(torch.optim.SGD, lr=0.01), bias=False, init="zeros",
                            optimization="manual")
    trainer = L.Trainer(max_epochs=12, accelerator="cpu", devices=1, logger=False, callbacks=[plots],
                        default_root_dir=tmp_path, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=ToyDataModule())
    x, y = torch.tensor([[1.0], [2.0], [3.0], [4.0]]), torch.tensor([[2.0], [4.0], [6.0], [8.0]])
    journal = [w.item() for w, _, _ in journal_loop(x, y, torch.zeros(1, 1), None, 0.01, 12)]
    np.testing.assert_allclose(plots.w_path, journal, rtol=1e-6, atol=1e-7)
    assert plots.saved == {"fit": tmp_path / "fit.png", "loss_surface": tmp_path / "loss_surface.png"}
    for path in plots.saved.values():
        _assert_png(path)


@pytest.mark.parametrize(("n_features", "xlabel"), [(1, "x"), (3, "actual y")])
def test_fit_picture_is_a_line_over_the_points_or_predicted_against_actual(n_features, xlabel):
    from types import SimpleNamespace

    import matplotlib.pyplot as plt

    from gradlab.lessons.data import RegressionDataModule

    dm = RegressionDataModule(n_features=n_features)
    dm.setup()
    model = LinearRegressor(n_features, optimizer=partial(torch.optim.SGD, lr=0.01))
    fig = FitPlots.fit_figure(SimpleNamespace(datamodule=dm), model, epochs_done=0)
    ax = fig.axes[0]
    assert ax.get_xlabel() == xlabel
    points, line = ax.lines[:2]
    assert len(points.get_xdata()) == len(dm.splits["train"][0])  # one marker per training row
    assert len(line.get_xdata()) == (len(points.get_xdata()) if n_features == 1 else 2)
    plt.close(fig)


def test_fit_pictures_of_a_run_share_their_axes_and_name_epoch_w_b_and_loss(tmp_path):
    import matplotlib.pyplot as plt

    from gradlab.lessons.data import RegressionDataModule

    dm = RegressionDataModule()
    dm.setup()
    model = LinearRegressor(1, optimizer=partial(torch.optim.SGD, lr=0.01))
    plots = FitPlots(every_n_epochs=1)
    trainer = SimpleNamespace(datamodule=dm)
    before = plots.fit_figure(trainer, model, 0, plots)
    with torch.no_grad():
        model.net.lin.weight.fill_(80.0)
    after = plots.fit_figure(trainer, model, 10, plots)
    (ax0,), (ax1,) = before.axes, after.axes
    assert ax0.get_xlim() == ax1.get_xlim() and ax0.get_ylim() == ax1.get_ylim()  # fixed axes
    x, y = dm.splits["train"]
    assert ax0.get_ylim()[0] < float(y.min()) and ax0.get_ylim()[1] > float(y.max())  # all the data shows
    w, b = model.coefficients()
    loss = float(((x @ w.T + b - y) ** 2).mean())
    assert ax1.get_title() == f"epoch 10, w = 80, b = {b.item():.4g}, loss = {loss:.4g}"
    plt.close("all")
