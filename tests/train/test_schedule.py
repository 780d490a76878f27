"""Learning-rate schedules: the tutorial's and the paper's values at their boundaries, plateau and warm-up."""

import math

import pytest

from resnetlab.train.config import TrainConfig, resolve_config
from resnetlab.train.schedule import PlateauState, WarmupState, effective_lr, keras_lr, scheduled_lr


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


def test_paper_warmup_until_error_below_80_percent():
    config = resolve_config("paper", overrides={"model": "resnet110"})
    warmup = WarmupState(active=True)
    assert effective_lr(config, 0, 351, warmup, PlateauState()) == pytest.approx(0.01)
    warmup.update(100, 0.85, config)
    assert warmup.active
    warmup.update(150, 0.79, config)
    assert not warmup.active and warmup.finished_at == 150
    assert effective_lr(config, 151, 351, warmup, PlateauState()) == pytest.approx(0.1)
