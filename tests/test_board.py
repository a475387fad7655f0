"""The course's lesson 16 in TensorBoard for a classifier: the input image grid, and one precision-recall
curve per class whose counts equal numpy's at TensorBoard's thresholds i/126."""

from __future__ import annotations

import numpy as np
import torch
from conftest import make_cfg
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

from gradlab.run.recipe import train


def test_a_cnn_run_logs_an_image_grid_and_pr_curves_counted_as_numpy_counts_them(tmp_path):
    result = train(make_cfg("experiment=course_cnn", "trainer.max_epochs=1", "+trainer.limit_train_batches=40",
                            root_dir=tmp_path))
    board = EventAccumulator(str(result.run_dir), size_guidance={"images": 0, "tensors": 0}).Reload()
    assert "inputs/images" in board.Tags()["images"]
    image = board.Images("inputs/images")[0]
    assert image.width > 8 and image.height > 8  # a grid of 8x8 images, not one

    state = torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    from gradlab.lessons.cnn import ConvNet  # the trained network, rebuilt, for the probabilities

    net = ConvNet((1, 8, 8), [6, 16], 3, 1, 2, [120, 84], 10)
    net.load_state_dict({k[len("net."):]: v for k, v in state.items() if k.startswith("net.")})
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    _, x_test, _, y_test = train_test_split(X, y, test_size=0.2, random_state=1234)
    with torch.no_grad():
        p = torch.softmax(net(torch.from_numpy(x_test / 16).float()), 1).numpy()
    thresholds = np.arange(127) / 126
    for k in range(10):
        data = tensor_util.make_ndarray(board.Tensors(f"pr_curve/{k}")[-1].tensor_proto)  # (6, 127)
        tp, fp, tn, fn, precision, recall = data
        positive = y_test == k
        expected_tp = [(positive & (p[:, k] >= t)).sum() for t in thresholds]
        expected_fp = [(~positive & (p[:, k] >= t)).sum() for t in thresholds]
        # a probability within float32 rounding of a threshold may fall in the bucket below
        np.testing.assert_allclose(tp, expected_tp, atol=1)
        np.testing.assert_allclose(fp, expected_fp, atol=1)
        np.testing.assert_allclose(tp + fn, positive.sum())
        np.testing.assert_allclose(fp + tn, (~positive).sum())
        assert tp[0] == positive.sum() and fp[0] == (~positive).sum()  # at threshold 0 every image is positive
        ok = tp + fp > 0
        np.testing.assert_allclose(precision[ok], (tp / np.maximum(tp + fp, 1))[ok], rtol=1e-5)
        np.testing.assert_allclose(recall, tp / positive.sum(), rtol=1e-5)
