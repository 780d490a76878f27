"""Learning-rate schedules: the tutorial's and the paper's values at their boundaries, plateau and warm-up."""

import math

import pytest
import torch
from torch import nn

from resnetlab.train.config import TrainConfig, resolve_config
from resnetlab.train.schedule import (PlateauState, WarmupState, effective_lr, keras_lr, monitored_value,
                                      scheduled_lr, warmup_applies)


def tutorial_lr_schedule(epoch):
    """Copied from the Keras example, as the reference."""
    lr = 1e-3
    if epoch > 180:
        lr *= 0.5e-3
    elif epoch > 160:
        lr *= 1e-3
    elif epoch > 120:
        lr *= 1e-2
    elif epoch > 80:
        lr *= 1e-1
    return lr


@pytest.mark.parametrize("epoch", [0, 80, 81, 120, 121, 160, 161, 180, 181, 199])
def test_keras_schedule_equals_tutorial_function(epoch):
    assert keras_lr(epoch) == tutorial_lr_schedule(epoch)
    config = resolve_config("keras")
    steps_per_epoch = 1563
    assert scheduled_lr(config, epoch * steps_per_epoch + 7, steps_per_epoch) == tutorial_lr_schedule(epoch)


def test_keras_values_at_the_boundaries():
    assert [keras_lr(e) for e in (0, 81, 121, 161, 181)] == pytest.approx([1e-3, 1e-4, 1e-5, 1e-6, 5e-7])


def test_paper_schedule_at_iterations_0_32k_48k():
    config = resolve_config("paper")
    steps_per_epoch = 45000 // 128
    assert config.total_steps(steps_per_epoch) == 64000
    values = [scheduled_lr(config, step, steps_per_epoch) for step in (0, 31999, 32000, 47999, 48000, 63999)]
    assert values == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_cosine_and_onecycle_endpoints():
    cosine = TrainConfig(schedule="cosine", lr=0.4, iterations=100)
    assert scheduled_lr(cosine, 0, 10) == pytest.approx(0.4)
    assert scheduled_lr(cosine, 50, 10) == pytest.approx(0.2)
    assert scheduled_lr(cosine, 100, 10) == pytest.approx(0.0, abs=1e-12)
    onecycle = TrainConfig(schedule="onecycle", lr=0.4, iterations=100, onecycle_peak=0.2)
    assert scheduled_lr(onecycle, 19, 10) == pytest.approx(0.4)
    assert scheduled_lr(onecycle, 0, 10) < scheduled_lr(onecycle, 10, 10) < 0.4
    assert scheduled_lr(onecycle, 60, 10) == pytest.approx(0.2)
    assert scheduled_lr(onecycle, 99, 10) == pytest.approx(0.005)


def test_plateau_reduces_after_patience_and_respects_min_lr():
    config = TrainConfig(plateau_factor=math.sqrt(0.1), plateau_patience=2, plateau_min_lr=1e-4,
                         plateau_monitor="val_loss")
    plateau = PlateauState()
    assert not plateau.update(1.0, 1e-3, config)  # first value is the best so far
    assert not plateau.update(1.00005, 1e-3, config)  # no improvement (within min_delta): wait 1
    assert plateau.update(1.2, 1e-3, config)  # wait 2 = patience: reduce
    assert plateau.scale == pytest.approx(math.sqrt(0.1))
    assert not plateau.update(0.5, 1e-3, config) and plateau.wait == 0  # improvement resets the wait
    lr, plateau = 1.5e-4, PlateauState(best=0.5)
    for _ in range(6):
        if plateau.update(0.9, lr, config):
            lr = 1.5e-4 * plateau.scale
    assert lr == pytest.approx(1e-4) and plateau.reductions == 1  # 1.5e-4 x 0.316 is clipped to min_lr, no lower


def test_plateau_accuracy_monitor_is_maximised():
    config = TrainConfig(plateau_factor=0.5, plateau_patience=1, plateau_monitor="val_acc")
    plateau = PlateauState()
    plateau.update(0.5, 0.1, config)
    assert not plateau.update(0.6, 0.1, config)
    assert plateau.update(0.55, 0.1, config)


def test_plateau_reduction_undone_by_keras_schedule_but_kept_otherwise():
    reset = TrainConfig(schedule="constant", lr=0.1, plateau_factor=0.5, plateau_reset_by_schedule=True,
                        iterations=100)
    kept = TrainConfig(schedule="constant", lr=0.1, plateau_factor=0.5, iterations=100)
    plateau = PlateauState(scale=0.5)
    assert effective_lr(reset, 10, 10, WarmupState(), plateau) == pytest.approx(0.1)
    assert effective_lr(kept, 10, 10, WarmupState(), plateau) == pytest.approx(0.05)


def _steps(warmup, config, errors_per_step, start=0, batch=100):
    """Feed steps whose batches have the given training errors (batch 100, so errors are exact)."""
    for offset, error in enumerate(errors_per_step):
        warmup.after_step(start + offset + 1, torch.tensor(round((1 - error) * batch)), batch, config)


def test_paper_warmup_until_error_below_80_percent_checked_every_50_steps():
    config = resolve_config("paper", overrides={"model": "resnet110"})
    assert config.warmup_check_every == 50
    warmup = WarmupState(active=warmup_applies(config, 110))
    assert warmup.active and not warmup_applies(config, 56)
    assert effective_lr(config, 0, 351, warmup, PlateauState()) == pytest.approx(0.01)
    _steps(warmup, config, [0.85] * 50)
    assert warmup.active  # 85 % at the check of step 50
    _steps(warmup, config, [0.5] * 49, start=50)
    assert warmup.active  # below 80 % since step 51, but the next check is at step 100
    _steps(warmup, config, [0.5], start=99)
    assert not warmup.active and warmup.finished_at == 100
    assert effective_lr(config, 100, 351, warmup, PlateauState()) == pytest.approx(0.1)


def test_warmup_check_averages_the_window_and_survives_a_checkpoint():
    config = TrainConfig(warmup_lr=0.01, warmup_check_every=4)
    warmup = WarmupState(active=True)
    _steps(warmup, config, [0.9, 0.9])
    resumed = WarmupState(**warmup.state_dict())  # a checkpoint between two checks
    assert resumed.window_images == 200 and resumed.window_correct == 20
    _steps(resumed, config, [0.6], start=2)
    assert resumed.active  # step 3 alone is below 80 %, but step 3 is no check
    _steps(resumed, config, [0.6], start=3)
    assert not resumed.active and resumed.finished_at == 4  # the 4 steps' mean error: 75 %


def keras_reduce_lr_on_plateau(values, lr, factor, patience, min_lr, min_delta=1e-4):
    """Keras 3's ReduceLROnPlateau.on_epoch_end (mode min, cooldown 0), as the reference: (lr, wait) per epoch."""
    best, wait, out = None, 0, []
    for current in values:
        if best is None or current + min_delta < best:  # _is_improvement with min_delta negated for "less"
            best, wait = current, 0
        else:
            wait += 1
            if wait >= patience:
                if lr > min_lr:  # _reduce_optimizer_lr
                    lr = max(lr * factor, min_lr)
                    wait = 0
        out.append((lr, wait))
    return out


def test_plateau_keeps_waiting_at_min_lr_as_keras_does():
    config = TrainConfig(plateau_factor=0.5, plateau_patience=2, plateau_min_lr=2.5e-4)
    values = [1.0] + [1.5] * 9
    plateau, lr, ours = PlateauState(), 1e-3, []
    for value in values:
        plateau.update(value, lr, config)
        lr = max(1e-3 * plateau.scale, config.plateau_min_lr)
        ours.append((lr, plateau.wait))
    keras = keras_reduce_lr_on_plateau(values, 1e-3, 0.5, 2, 2.5e-4)
    assert [w for _, w in ours] == [w for _, w in keras]
    assert [lr for lr, _ in ours] == pytest.approx([lr for lr, _ in keras])
    assert ours[-1][1] > config.plateau_patience  # at min_lr the wait grows on; no reset
    assert plateau.reductions == 2


def test_plateau_val_loss_includes_the_l2_term_as_keras_does():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight.fill_(0.5)  # sum of squares: 108 * 0.25 = 27
    config = TrainConfig(l2=1e-4, plateau_monitor="val_loss")
    row = {"val_loss": 1.0, "val_acc": 0.5}
    assert monitored_value(row, "val", config, model) == pytest.approx(1.0 + 1e-4 * 27)
    assert monitored_value(row, "val", TrainConfig(plateau_monitor="val_loss"), model) == 1.0
    assert monitored_value(row, "val", TrainConfig(l2=1e-4, plateau_monitor="val_acc"), model) == 0.5
