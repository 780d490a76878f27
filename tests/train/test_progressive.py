"""Progressive resizing: the first epochs train on smaller batches, evaluation stays at the full size."""

from __future__ import annotations

import shutil

import pytest
import torch
from test_loop import assert_same_weights, final_weights, tiny_config

from resnetlab.cli import main
from resnetlab.data.augment import resize_batch
from resnetlab.errors import UserError
from resnetlab.train import loop
from resnetlab.train.announce import STEP_COST_EXPONENT, progressive_phrase, step_costs
from resnetlab.train.checkpoint import list_checkpoints
from resnetlab.train.config import resolve_config
from resnetlab.train.graphs import unsupported_reason
from resnetlab.train.schedule import side_segments, train_side


def recording_steps(monkeypatch) -> list[tuple[int, int]]:
    """Patch the loop's step builder so that every training batch's (epoch, side) is recorded."""
    seen: list[tuple[int, int]] = []
    original = loop.make_train_step

    def make(run):
        step = original(run)

        def recorded(images, labels):
            seen.append((run.progress.epoch, images.shape[-1]))
            assert images.is_contiguous(memory_format=torch.channels_last)
            return step(images, labels)
        return recorded

    monkeypatch.setattr(loop, "make_train_step", make)
    return seen


def test_each_epoch_trains_at_its_side_and_evaluates_at_the_full_size(tiny_data, tmp_path, monkeypatch):
    seen = recording_steps(monkeypatch)
    evaluated: list[int] = []
    original_evaluate = loop.evaluate

    def evaluate(model, batches, *args, **kwargs):
        def sides():
            for images, labels in batches:
                evaluated.append(images.shape[-1])
                yield images, labels
        return original_evaluate(model, sides(), *args, **kwargs)

    monkeypatch.setattr(loop, "evaluate", evaluate)
    lines: list[str] = []
    config = tiny_config(tiny_data, progressive_sizes=[16, 24], progressive_until=[1 / 3, 2 / 3])
    loop.fit(config, tmp_path / "run", show_progress=False, log=lines.append)
    sides = {epoch: {side for e, side in seen if e == epoch} for epoch, _ in seen}
    assert sides == {0: {16}, 1: {24}, 2: {32}}
    assert set(evaluated) == {32}
    assert any("progressive resizing: epoch 1 on 16x16, epoch 2 on 24x24 batches, then 32x32" in line
               for line in lines)


def test_a_resumed_progressive_run_matches_an_uninterrupted_one(tiny_data, tmp_path):
    config = tiny_config(tiny_data, progressive_sizes=[16], progressive_until=[2 / 3])
    full = tmp_path / "full"
    loop.fit(config, full, show_progress=False, log=lambda _: None)
    resumed = tmp_path / "resumed"
    shutil.copytree(full, resumed)
    for later in list_checkpoints(resumed)[:-1]:  # keep only the epoch-1 checkpoint: epoch 2 is at 16 px again
        shutil.rmtree(later)
    for best in (resumed / "checkpoints").glob("best-*"):
        shutil.rmtree(best)
    loop.fit(config, resumed, show_progress=False, log=lambda _: None)
    assert_same_weights(final_weights(full), final_weights(resumed))


def test_resize_batch_keeps_the_memory_format_and_leaves_full_size_batches_alone():
    batch = torch.rand(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    assert resize_batch(batch, 32) is batch
    small = resize_batch(batch, 24)
    assert small.shape == (2, 3, 24, 24) and small.is_contiguous(memory_format=torch.channels_last)
    assert resize_batch(batch.contiguous(), 16).is_contiguous()
    flat = torch.full((1, 3, 32, 32), 0.25)
    assert torch.allclose(resize_batch(flat, 20), torch.full((1, 3, 20, 20), 0.25))  # a constant stays constant


def test_sizes_end_at_fractions_of_training_so_a_shorter_run_keeps_its_shape():
    config = resolve_config("cpu")  # 16 px to 2/11 of the steps, 24 px to 6/11, then 32 px
    assert side_segments(config, 11 * 781) == [(0, 1562, 16), (1562, 4686, 24), (4686, 8591, 32)]
    assert [train_side(config, step, 8591) for step in (0, 1561, 1562, 4685, 4686, 8590)] == [16, 16, 24, 24, 32, 32]
    assert progressive_phrase(config, 8591, 781) == ("; progressive resizing: epochs 1-2 on 16x16, epochs 3-6 on "
                                                     "24x24 batches, then 32x32")
    short = resolve_config("cpu", overrides={"epochs": 5})  # --epochs 5 still ends at the full size
    assert [side for _, _, side in side_segments(short, 5 * 781)] == [16, 24, 32]
    assert side_segments(short, 5 * 781)[-1] == (2130, 3905, 32)
    assert progressive_phrase(short, 3905, 781) == ("; progressive resizing: steps 1-710 on 16x16, steps 711-2,130 on "
                                                    "24x24 batches, then 32x32")
    assert step_costs(config, 8591, 0, 781) == pytest.approx(781 * 0.5 ** STEP_COST_EXPONENT)  # a 16 px epoch
    assert progressive_phrase(resolve_config("paper"), 64000, 391) == ""
    assert side_segments(resolve_config("paper"), 100) == [(0, 100, 32)]


def test_settings_are_checked():
    with pytest.raises(UserError, match="at least 8 pixels"):
        resolve_config("cpu", overrides={"progressive_sizes": [4], "progressive_until": [0.5]})
    with pytest.raises(UserError, match="list of integers"):
        resolve_config("cpu", overrides={"progressive_sizes": [24.5], "progressive_until": [0.5]})
    for until in ([0.5], [0.6, 0.5], [0.5, 1.5]):
        with pytest.raises(UserError, match="one per size"):
            resolve_config("cpu", overrides={"progressive_sizes": [16, 24], "progressive_until": until})
    with pytest.raises(UserError, match="fixed 8x8 average pooling"):
        resolve_config("keras", overrides={"progressive_sizes": [24], "progressive_until": [0.5]})
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, fused=True)
    assert "progressive resizing" in unsupported_reason(optimizer, device=torch.device("cuda"), distributed=False,
                                                        checkpointing=False, deterministic=False, resizing=True)


def test_the_flag_takes_integers(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--progressive-sizes", "24,x", "--data", "synthetic"])
    assert exit_info.value.code == 2
    assert "expected integers separated by commas" in capsys.readouterr().err


def test_the_end_estimate_scales_training_by_the_batch_pixels_and_keeps_evaluation_as_it_is():
    from types import SimpleNamespace

    from resnetlab.train.announce import EtaClock, duration

    config = resolve_config("cpu", overrides={"epochs": 4, "progressive_sizes": [16], "progressive_until": [0.25]})
    run = SimpleNamespace(config=config, progress=SimpleNamespace(step=10, epoch=1), steps_per_epoch=10,
                          total_steps=40, eval_loaders={})
    lines: list[str] = []
    EtaClock(run, lines.append).epoch_end(30.0, 20.0)  # epoch 1 at 16 px: 20 s of steps, 10 s of evaluation
    # each later epoch at 32 px: 10 s of evaluation + 20 s * 2^1.8 of steps; scaling the whole wall would say more
    later = 10.0 + 20.0 * 2 ** STEP_COST_EXPONENT
    assert f"3 more epochs of about {duration(later)} each" in lines[0]
    assert lines[0].endswith(f"({duration(3 * later)})") and duration(3 * later) != duration(3 * 30 * 2 ** 1.8)


def test_a_run_that_ends_small_says_so():
    config = resolve_config("cpu", overrides={"progressive_sizes": [16, 24], "progressive_until": [0.5, 1.0]})
    assert side_segments(config, 100) == [(0, 50, 16), (50, 100, 24)]
    assert progressive_phrase(config, 100, 10) == "; progressive resizing: epochs 1-5 on 16x16, epochs 6-10 on 24x24 batches"
