"""The journal's first lesson, "Autograd", as tests: each one is a line of the journal and what it
really does. Plain torch only: they cannot fail because of gradlab and protect nothing in it; they
are kept as the lesson, in runnable form (gradlab's manual and automatic paths rely on exactly this)."""

from __future__ import annotations

import pytest
import torch


@pytest.mark.parametrize("n", [3, 5])
def test_gradient_of_a_mean_is_one_over_n_per_element(n):
    weights = torch.ones(n, requires_grad=True)
    x = weights.mean()
    x.backward()
    # d/dw_i (w_1 + ... + w_n) / n = 1/n, whatever the values of w
    torch.testing.assert_close(weights.grad, torch.full((n,), 1 / n))


def test_requires_grad_false_stops_tracking_in_place():
    weights = torch.ones(3, requires_grad=True)
    weights.requires_grad_(False)
    y = weights + 2
    assert not weights.requires_grad
    assert not y.requires_grad and y.grad_fn is None


def test_detach_returns_an_untracked_copy_and_leaves_the_original_tracked():
    weights = torch.ones(3, requires_grad=True)
    detached = weights.detach()
    assert not detached.requires_grad and (detached + 2).grad_fn is None
    # the journal's bare `weights.detach()` throws its result away: weights is still tracked
    assert weights.requires_grad and (weights + 2).grad_fn is not None
    # a view of the same storage, not a copy of the numbers
    assert detached.data_ptr() == weights.data_ptr()


def test_no_grad_stops_tracking_inside_the_block_only():
    weights = torch.ones(3, requires_grad=True)
    with torch.no_grad():
        y = weights + 2
    assert torch.equal(y, torch.full((3,), 3.0))
    assert not y.requires_grad and y.grad_fn is None
    assert (weights + 2).requires_grad  # outside the block, tracking is back


def test_gradients_accumulate_across_backward_calls_until_zeroed():
    weights = torch.ones(3, requires_grad=True)
    for calls in range(1, 4):
        r = (weights + 3).sum()
        r.backward()
        # d r / d w_i = 1; backward adds into .grad, it does not overwrite it
        torch.testing.assert_close(weights.grad, torch.full((3,), float(calls)))
    weights.grad.zero_()
    torch.testing.assert_close(weights.grad, torch.zeros(3))
    (weights + 3).sum().backward()
    torch.testing.assert_close(weights.grad, torch.ones(3))


def test_zeroing_every_epoch_gives_the_same_gradient_each_time():
    weights = torch.ones(3, requires_grad=True)
    seen = []
    for _ in range(3):  # the journal's "basic feed" loop, run for 3 epochs instead of 1
        r = (weights + 3).sum()
        r.backward()
        seen.append(weights.grad.clone())
        weights.grad.zero_()
    assert all(torch.equal(g, torch.ones(3)) for g in seen)


def test_updating_a_weight_in_place_needs_no_grad():
    # why the journal's autograd loop wraps `w -= w.grad * learning_rate` in torch.no_grad()
    w = torch.tensor(0.0, requires_grad=True)
    ((w * 2 - 4) ** 2).backward()
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        w -= w.grad * 0.01
    with torch.no_grad():
        w -= w.grad * 0.01
    assert w.requires_grad and w.grad_fn is None  # still a leaf, still tracked
    torch.testing.assert_close(w.detach(), torch.tensor(0.16))  # 0 - 0.01 * (2 * 2 * (0 - 4))
