"""Settings that only observe (logging, evaluation cadence, progress bar, TensorBoard, checkpoint cadence, flip
test-time evaluation) never change what is trained: runs that differ only in them end with bit-identical
weights, with the paper's warm-up on."""

import pytest
import torch

from resnetlab.train.checkpoint import list_checkpoints, load_checkpoint
from resnetlab.train.config import resolve_config
from resnetlab.train.loop import fit

OBSERVERS = [
    dict(log_every=1, eval_every=0, tensorboard=False, show_progress=False),  # the reference
    dict(log_every=8, eval_every=0, tensorboard=False, show_progress=False),
    dict(log_every=3, eval_every=5, tensorboard=True, show_progress=True),
    dict(log_every=50, eval_every=2, tensorboard=False, show_progress=None),
    dict(log_every=2, eval_every=3, tensorboard=True, show_progress=False, checkpoint_every=3, keep_checkpoints=1,
         eval_flip=True),
]


def run(data, out, log_every, eval_every, tensorboard, show_progress, **more_observers):
    # The paper's warm-up made to apply to ResNet-8 (warmup_min_depth 0), with a threshold this data crosses
    # mid-run, checked every 4 steps; 7 steps per epoch, 4 epochs.
    config = resolve_config("paper", overrides=dict(
        model="resnet8", data=str(data), iterations=0, epochs=4, val_split=12, batch_size=8, deterministic=True,
        warmup_min_depth=0, warmup_error=0.45, warmup_check_every=4, log_every=log_every, eval_every=eval_every,
        tensorboard=tensorboard, **{"keep_checkpoints": 10, **more_observers}))
    fit(config, out, show_progress=show_progress, log=lambda _: None)
    final = load_checkpoint(list_checkpoints(out)[0])
    return final.model_state, final.state["warmup"], final.step


@pytest.fixture(scope="module")
def reference(tiny_data, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:  # module scope: the per-test cache isolation is not active yet
        patch.setenv("RESNETLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
        return run(tiny_data, tmp_path_factory.mktemp("reference"), **OBSERVERS[0])


@pytest.mark.parametrize("index", range(1, len(OBSERVERS)))
def test_logging_evaluation_progress_and_tensorboard_do_not_change_the_weights(tiny_data, tmp_path, reference,
                                                                                index):
    ref_weights, ref_warmup, steps = reference
    assert 0 < ref_warmup["finished_at"] < steps and ref_warmup["finished_at"] % 4 == 0  # warm-up ended mid-run
    weights, warmup, _ = run(tiny_data, tmp_path / "variant", **OBSERVERS[index])
    assert warmup["finished_at"] == ref_warmup["finished_at"]
    assert weights.keys() == ref_weights.keys()
    for key in weights:
        assert torch.equal(weights[key], ref_weights[key]), key
