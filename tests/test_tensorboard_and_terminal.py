"""What a run shows: TensorBoard's Scalars, HParams, Images and Histograms tabs and the learning
rate, read back from the event files; on the terminal, the config tree, a progress bar only on
a terminal, and the one-line summary."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest
from conftest import ROOT, make_cfg, run_script
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from gradlab.train import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = make_cfg("trainer.max_epochs=40", "trainer.check_val_every_n_epoch=10",
                   "callbacks.plots.every_n_epochs=20", "callbacks.histograms.every_n_epochs=20",
                   root_dir=tmp_path_factory.mktemp("logs"))
    result = train(cfg)
    events = EventAccumulator(str(result.run_dir), size_guidance={"scalars": 0, "images": 0, "histograms": 0})
    return result, events.Reload()


def test_scalars_for_every_stage_each_once(run):
    result, events = run
    tags = set(events.Tags()["scalars"])
    stages = {"train/loss", "train/gap", "val/loss", "val/mae", "val/r2", "test/loss", "test/mae", "test/r2"}
    assert stages <= tags
    assert not {"val/mse", "test/mse", "train/mse"} & tags  # the loss is the MSE: not logged twice
    assert [e.step for e in events.Scalars("val/loss")] == [9, 19, 29, 39]  # every 10 epochs


def test_hparams_tab_holds_the_config_and_the_real_final_metrics(run):
    result, events = run
    content = events.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = session.session_start_info.hparams
    assert hparams["optimizer.lr"].number_value == pytest.approx(0.01)
    assert hparams["trainer.max_epochs"].number_value == 40
    assert hparams["data._target_"].string_value == "gradlab.data.RegressionDataModule"

    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    shown = {m.name.tag for m in experiment.metric_infos}
    assert {"hp/val_loss", "hp/test_loss", "hp/test_mae", "hp/test_r2", "hp/train_final_loss"} <= shown
    for tag in ("hp/test_loss", "hp/val_loss"):  # the metric the tab shows is the run's, not -1
        assert events.Scalars(tag)[-1].value == pytest.approx(result.metrics[tag[3:].replace("_", "/", 1)])
    assert "hp_metric" not in events.Tags()["scalars"]


def test_fit_picture_in_images_and_weight_histograms(run):
    _, events = run
    images = events.Images("plots/fit")
    assert images and images[-1].encoded_image_string[:4] == b"\x89PNG"
    for name in ("weights/net.lin.weight", "weights/net.lin.bias"):
        assert [h.step for h in events.Histograms(name)] == [20, 40], name  # every 20 epochs


def test_config_tree_summary_and_no_progress_bar_when_piped(tmp_path):
    shown = run_script("train.py", "trainer.max_epochs=20", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "config" in shown.stdout and "├── optimizer" in shown.stdout and "lr: 0.01" in shown.stdout
    summary = shown.stdout.strip().splitlines()[-1]
    assert summary.startswith("gradlab: finished 20 epochs in ")
    assert "run dir lightning_logs/default/version_0" in summary
    assert "Epoch 19/19" not in shown.stdout  # not a terminal: no progress bar

    skipped = run_script("train.py", "trainer.fast_dev_run=true", "print_config=false", cwd=tmp_path)
    assert skipped.returncode == 0, skipped.stderr
    assert "├── optimizer" not in skipped.stdout


@pytest.mark.slow
def test_rich_progress_bar_on_a_terminal(tmp_path):
    main, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), "trainer.max_epochs=20",
                             "print_config=false"], cwd=tmp_path, stdout=child, stderr=child)
    os.close(child)
    out = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal closed: the process is done
            break
        if not chunk:
            break
        out += chunk
    assert proc.wait(timeout=120) == 0, out.decode(errors="replace")
    text = out.decode(errors="replace")
    assert "Epoch 19/19" in text and "━" in text  # rich's bar
