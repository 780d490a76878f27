"""The CUDA path on a real GPU (skipped without one; ``benchmarks/gpu_session.py`` runs it there): the step captured
as a CUDA graph trains as the eager step does, a graphed run resumes from its checkpoint, and evaluation between
replays sees (and does not disturb) what the replays trained.

The GPU is not bit-exact between two runs (some backward kernels add with atomics, and bf16 autocast rounds), so
weights are compared within bf16 precision of what training changed; counters (BatchNorm's ``num_batches_tracked``,
steps) must be equal exactly: they would show a warm-up step that was not undone.
"""

import shutil

import pytest
import torch

from resnetlab.models import create_model
from resnetlab.train.checkpoint import list_checkpoints, load_checkpoint
from resnetlab.train.config import TrainConfig, resolve_config
from resnetlab.train.evaluate import evaluate
from resnetlab.train.graphs import GraphedStep
from resnetlab.train.history import read_history
from resnetlab.train.loop import fit
from resnetlab.train.optim import build_optimizer, set_lr, use_tensor_lr
from resnetlab.train.step import build_train_step

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

BF16_RTOL = 1.6e-2  # torch.testing's tolerance for bf16
CONFIG = TrainConfig(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, wd_exclude_norm_bias=True,
                     label_smoothing=0.1)
LRS = [0.1, 0.3, 0.05, 0.2, 0.01, 0.15]


@pytest.fixture(autouse=True)
def stable_kernels():
    """The same convolution algorithms for the eager and the graphed model (autotuning could pick others)."""
    saved = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    yield
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved


def setup(amp: bool, seed: int = 0):
    """resnet8 as the loop builds it on CUDA: channels_last, the fused SGD with a tensor learning rate."""
    device = torch.device("cuda")
    torch.manual_seed(seed)
    model = create_model("resnet8", num_classes=4).to(device).to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, CONFIG, device)
    assert optimizer.defaults.get("fused")
    use_tensor_lr(optimizer, device)
    return model, optimizer, build_train_step(model, optimizer, CONFIG, device, amp)


def batches(count: int = len(LRS), size: int = 32):
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(size, 3, 32, 32, generator=generator).cuda().contiguous(memory_format=torch.channels_last),
             torch.randint(0, 4, (size,), generator=generator).cuda()) for _ in range(count)]


def train(step, optimizer, data, lrs=LRS):
    losses = []
    for lr, (images, labels) in zip(lrs, data):
        set_lr(optimizer, lr)
        loss, _ = step(images, labels)
        losses.append(loss.clone())
    return torch.stack(losses)


def assert_trained_alike(ours: dict, theirs: dict, start: dict) -> None:
    """Every float tensor equal to bf16 precision of itself or of what training changed in it; counters exact."""
    for name, value in theirs.items():
        if not value.is_floating_point():
            assert torch.equal(ours[name], value), name
            continue
        change = (value - start[name].to(value.device)).abs().max().item()
        torch.testing.assert_close(ours[name], value, rtol=BF16_RTOL, atol=BF16_RTOL * change + 1e-6, msg=name)


def snapshot(model) -> dict:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


@pytest.mark.parametrize("amp", [True, False], ids=["bf16", "fp32"])
def test_graphed_step_trains_like_the_eager_step(amp):
    data = batches()
    eager_model, eager_optimizer, eager_step = setup(amp)
    start = snapshot(eager_model)
    eager_losses = train(eager_step, eager_optimizer, data)

    model, optimizer, step = setup(amp)
    graphed = GraphedStep(step, model, optimizer)  # the real capture: torch.cuda.graph
    losses = train(graphed, optimizer, data)
    torch.cuda.synchronize()

    assert graphed.captured and not graphed.failure and graphed.eager_calls == 0
    torch.testing.assert_close(losses, eager_losses, rtol=BF16_RTOL, atol=1e-3)
    assert_trained_alike(snapshot(model), snapshot(eager_model), start)  # weights, BN statistics and counts
    assert int(model.bn1.num_batches_tracked) == len(LRS)  # the capture's warm-up steps were undone
    for ours, theirs in zip(optimizer.state.values(), eager_optimizer.state.values()):
        change = theirs["momentum_buffer"].abs().max().item()
        torch.testing.assert_close(ours["momentum_buffer"], theirs["momentum_buffer"], rtol=BF16_RTOL,
                                   atol=BF16_RTOL * change + 1e-6)


def test_evaluation_between_replays_sees_the_trained_weights_and_leaves_training_alone():
    data, probe = batches(), batches(count=2, size=64)
    num_classes, device = 4, torch.device("cuda")
    results = {}
    for kind in ("eager", "graphed"):
        model, optimizer, step = setup(amp=True)
        start = snapshot(model)
        if kind == "graphed":
            step = GraphedStep(step, model, optimizer)
        train(step, optimizer, data[:3], LRS[:3])
        middle = evaluate(model, probe, num_classes, device, amp=True, flip=True)
        assert model.training  # evaluate puts the model back in train mode
        fresh = create_model("resnet8", num_classes=num_classes).to(device).to(memory_format=torch.channels_last)
        fresh.load_state_dict(model.state_dict())  # what a checkpoint written now would hold
        copied = evaluate(fresh, probe, num_classes, device, amp=True, flip=True)
        assert copied.loss == pytest.approx(middle.loss, rel=1e-5) and copied.accuracy == middle.accuracy
        later = train(step, optimizer, data[3:], LRS[3:])
        results[kind] = (middle, later, snapshot(model), start)
    (eager_middle, eager_later, eager_state, start), (middle, later, state, _) = results["eager"], results["graphed"]
    assert middle.loss == pytest.approx(eager_middle.loss, rel=BF16_RTOL)
    assert abs(middle.flip_accuracy - eager_middle.flip_accuracy) <= 2 / 128  # a borderline image or two
    torch.testing.assert_close(later, eager_later, rtol=BF16_RTOL, atol=1e-3)
    assert_trained_alike(state, eager_state, start)


def tiny_run_config(data, **changes):
    values = dict(model="resnet8", data=str(data), iterations=0, epochs=3, val_split=12, batch_size=16,
                  log_every=2, keep_checkpoints=10, tensorboard=False, device="cuda", cuda_graphs="on")
    return resolve_config("paper", overrides={**values, **changes})


def test_a_graphed_run_resumes_from_its_checkpoint(tiny_data, tmp_path):
    config = tiny_run_config(tiny_data)
    full, lines = tmp_path / "full", []
    fit(config, full, show_progress=False, log=lines.append)
    assert "CUDA graphs: on (the whole training step is replayed)" in lines
    resumed = tmp_path / "resumed"
    shutil.copytree(full, resumed)
    *later, first = list_checkpoints(resumed)  # newest first: keep only the epoch-1 checkpoint (step 3)
    for path in later:
        shutil.rmtree(path)
    for best in (resumed / "checkpoints").glob("best-*"):
        shutil.rmtree(best)
    lines.clear()
    results = fit(config, resumed, show_progress=False, log=lines.append)
    assert any(line.startswith(f"resuming {resumed} from step 3") for line in lines)
    assert "CUDA graphs: on (the whole training step is replayed)" in lines
    assert results["steps"] == 9 and len(read_history(resumed)) == 3
    final = load_checkpoint(list_checkpoints(resumed)[0]).model_state
    reference = load_checkpoint(list_checkpoints(full)[0]).model_state
    assert_trained_alike(final, reference, load_checkpoint(first).model_state)
    assert int(final["bn1.num_batches_tracked"]) == 9  # neither run's capture warm-up left a step behind


def test_evaluation_inside_a_graphed_run_matches_an_eager_run(tiny_data, tmp_path):
    """History points inside epochs (``eval_every``) evaluate between replays; the run trains as an eager one."""
    runs = {}
    for mode in ("off", "on"):
        run = tmp_path / mode
        results = fit(tiny_run_config(tiny_data, cuda_graphs=mode, eval_every=2, eval_flip=True), run,
                      show_progress=False, log=lambda _: None)
        runs[mode] = (results, read_history(run), load_checkpoint(list_checkpoints(run)[0]).model_state)
    (eager, eager_rows, eager_weights), (graphed, rows, weights) = runs["off"], runs["on"]
    assert [row["step"] for row in rows] == [row["step"] for row in eager_rows] == [2, 3, 4, 6, 8, 9]
    test_images = 24
    for row, eager_row in zip(rows, eager_rows):
        assert abs(row["test_acc"] - eager_row["test_acc"]) <= 1 / test_images + 1e-9
        assert abs(row["test_acc_flip"] - eager_row["test_acc_flip"]) <= 1 / test_images + 1e-9
        assert row["test_loss"] == pytest.approx(eager_row["test_loss"], rel=5e-2)
    for name, value in eager_weights.items():
        if value.is_floating_point():  # nine steps from the same start: within a few bf16 roundings
            torch.testing.assert_close(weights[name], value, rtol=5e-2, atol=5e-3 * value.abs().max().item() + 1e-6,
                                       msg=name)
        else:
            assert torch.equal(weights[name], value), name
    assert graphed["steps"] == eager["steps"] == 9
