"""What a run shows: TensorBoard's Scalars, HParams, Images and Histograms tabs and the learning
rate, read back from the event files; on the terminal, the config tree, a progress bar only on
a terminal, and the one-line summary."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import socket
import struct
import subprocess
import sys
import termios
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from conftest import ROOT, make_cfg, run_script
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from gradlab.run.recipe import train


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
    assert {"train/loss", "train/loss_gap", "val/loss", "val/mae", "val/r2"} <= tags
    assert not any(tag.startswith("test/") for tag in tags)  # the test split's numbers: in the report
    assert not {"val/mse", "test/mse", "train/mse"} & tags  # the loss is the MSE: not logged twice
    assert [e.step for e in events.Scalars("val/loss")] == [9, 19, 29, 39]  # every 10 epochs


def test_hparams_row_is_short_and_its_metrics_are_the_runs_own_scalar_tags(run):
    result, events = run
    content = events.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = session.session_start_info.hparams
    assert len(hparams) <= 15
    assert hparams["optimizer.lr"].number_value == pytest.approx(0.01)
    assert hparams["trainer.max_epochs"].number_value == 40
    assert hparams["data.batch_size"].string_value == "full"
    assert not any(k.endswith("_target_") or k.startswith("callbacks.") for k in hparams)

    # no experiment summary of its own: TensorBoard builds the table from all runs (a sweep's
    # varying keys first), its metric columns the runs' own scalar tags; no hp/* copies of them
    assert "_hparams_/experiment" not in content
    scalars = set(events.Tags()["scalars"])
    assert not any(tag.startswith("hp/") or tag in ("epoch", "hp_metric") for tag in scalars)


def test_small_models_log_w_and_b_as_curves_and_no_histograms(run):
    result, events = run
    w, b = events.Scalars("weights/w"), events.Scalars("weights/b")
    assert [e.step for e in w] == [e.step for e in events.Scalars("train/loss")]
    state = torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert w[-1].value == pytest.approx(state["net.lin.weight"].item(), rel=1e-6)  # the last step's weights
    assert b[-1].value == pytest.approx(state["net.lin.bias"].item(), rel=1e-6)
    assert events.Tags()["histograms"] == []  # two numbers make no histogram


def test_a_model_with_many_weights_logs_them_as_histograms_each_epoch_asked_and_at_the_end(tmp_path):
    """Softmax on wine: 39 weights, 3 biases (fewer than min_values=11: curves, not a histogram). The
    Histograms tab's last entry is the trained weights, read back from the event files."""
    cfg = make_cfg("model=softmax", "data=wine", "trainer.max_epochs=6", "callbacks.histograms.every_n_epochs=2",
                   root_dir=tmp_path)
    result = train(cfg)
    events = EventAccumulator(str(result.run_dir), size_guidance={"histograms": 0}).Reload()
    assert events.Tags()["histograms"] == ["weights/net.lin.weight"]
    entries = events.Histograms("weights/net.lin.weight")
    assert [e.step for e in entries] == [2, 4, 6]  # epochs 2, 4 and 6 (the end, logged once)
    state = torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    weight = state["net.lin.weight"]
    last = entries[-1].histogram_value
    assert last.num == weight.numel() == 39
    assert last.sum == pytest.approx(weight.sum().item(), rel=1e-5, abs=1e-6)
    assert (last.min, last.max) == pytest.approx((weight.min().item(), weight.max().item()), rel=1e-6)


def test_every_run_has_a_text_summary_and_a_loss_chart_layout(run):
    result, events = run
    (entry,) = events.Tensors("run/summary/text_summary")
    text = entry.tensor_proto.string_val[0].decode()
    assert text.startswith("FINISHED")
    assert "Final loss (train MSE)" in text and "Coefficients learned" in text
    assert events.PluginTagToContent("custom_scalars")  # the Custom Scalars tab: train and val loss


def test_fit_picture_in_images(run):
    _, events = run
    images = events.Images("train/pictures/fit")
    assert images and images[-1].encoded_image_string[:4] == b"\x89PNG"
    assert [e.step for e in images] == [0, 20, 40]  # before training, every 20 epochs


def test_piped_run_prints_a_short_start_the_loss_every_few_epochs_and_the_report(tmp_path):
    shown = run_script("train.py", "trainer.max_epochs=20", "optimizer.lr=0.05", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.strip().splitlines()
    assert "gradlab: overrides: trainer.max_epochs=20 optimizer.lr=0.05" in lines
    assert "├── optimizer" not in shown.stdout  # the whole config only when asked
    assert not any("GPU available" in line or "┃" in line for line in lines)  # no banners, no model table
    assert "gradlab: LinearRegressor, 2 parameters, on cpu" in shown.stdout
    # the journal prints its loss every few epochs: about ten lines a run, the last epoch included
    curve = [line for line in lines if line.startswith("Epoch ")]
    assert [line.split()[1] for line in curve] == [f"{e}/20" for e in range(2, 21, 2)]
    losses = [float(line.split()[3]) for line in curve]
    assert losses == sorted(losses, reverse=True)  # full-batch descent on a quadratic: never up
    assert lines[-4].startswith("gradlab: finished 20 epochs in ")
    assert lines[-3].startswith("gradlab: val/loss ")
    assert lines[-2] == "gradlab: run dir lightning_logs/default/version_0"
    assert lines[-1] == "gradlab: see it with: tensorboard --logdir lightning_logs"

    tree = run_script("train.py", "trainer.fast_dev_run=true", "print_config=true", cwd=tmp_path)
    assert tree.returncode == 0, tree.stderr
    assert "├── optimizer" in tree.stdout and "lr: 0.01" in tree.stdout


def _at_a_terminal(args: list[str], cwd: Path, columns: int = 80) -> str:
    """What a run prints to a pseudo-terminal `columns` wide."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), *args],
                            cwd=cwd, stdout=child, stderr=child)
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
    return out.decode(errors="replace")


@pytest.mark.slow
def test_at_a_terminal_progress_is_one_line_redrawn_in_epochs_that_never_wraps(tmp_path):
    text = _at_a_terminal(["trainer.max_epochs=3000"], tmp_path, columns=80)
    screen_lines = text.replace("\r\n", "\n").split("\n")
    redraws = [part for line in screen_lines for part in line.split("\r") if part.startswith("Epoch ")]
    assert len(redraws) >= 2  # redrawn in place while it trains
    assert all(len(part) <= 79 for part in redraws)  # never wider than the terminal: no wrapping
    assert all(0 < int(part.split()[1].split("/")[0]) <= 3000 for part in redraws)  # 1-based epochs
    final = [line.split("\r")[-1] for line in screen_lines if "\r" in line and "Epoch " in line]
    assert len(final) == 1 and final[0].startswith("Epoch 3000/3000  loss ")  # one final line
    assert "━" not in text and "0.00it/s" not in text  # not Lightning's batch bar


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_a_tensorboard_server_shows_a_sweeps_jobs_by_their_lr_and_ticks_lr_in_hparams(tmp_path):
    proc = run_script("train.py", "-m", "optimizer.lr=0.001,0.1", "trainer.max_epochs=20", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (sweep,) = (p.name for p in (tmp_path / "lightning_logs" / "default").iterdir())
    port = _free_port()
    board = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", "lightning_logs", "--host",
                              "127.0.0.1", "--port", str(port)], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(120):  # TensorBoard's first start takes a few seconds
            try:
                runs = _get(f"{base}/data/runs")
                if len(runs) == 2:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        # short names a legend can show whole: the experiment, the sweep, what the job changed
        assert sorted(runs) == [f"default/{sweep}/lr=0.001,max_epochs=20", f"default/{sweep}/lr=0.1,max_epochs=20"]
        tags = _get(f"{base}/data/plugin/scalars/tags")
        for run in runs:
            assert {"train/loss", "train/loss_gap", "val/loss"} <= set(tags[run])
            assert not any(t == "epoch" or t.startswith(("hp/", "test/")) for t in tags[run])
        experiment = _get(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""})
        names = [h["name"] for h in experiment["hparamInfos"]]
        assert names[:2] == ["args", "optimizer.lr"]  # the keys that differ come first: ticked without clicking
        assert len(names) <= 15 and not any(n.endswith("_target_") for n in names)
        metrics = [m["name"]["tag"] for m in experiment["metricInfos"]]
        assert metrics[:5] == ["train/loss", "train/loss_gap", "val/loss", "val/mae", "val/r2"]
    finally:
        board.terminate()
        board.wait(timeout=30)
