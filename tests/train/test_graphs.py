"""The captured training step: everything around the CUDA graph, checked on the CPU with a stand-in capture."""

import pytest
import torch

from resnetlab.errors import UserError
from resnetlab.models import create_model
from resnetlab.train.config import TrainConfig
from resnetlab.train.graphs import GraphedStep, eager_capture, graphed_if_supported, unsupported_reason
from resnetlab.train.optim import current_lr, parameter_groups, portable_state_dict, set_lr, use_tensor_lr
from resnetlab.train.step import build_train_step

CONFIG = TrainConfig(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, wd_exclude_norm_bias=True,
                     label_smoothing=0.1)
LRS = [0.1, 0.3, 0.05, 0.2, 0.01, 0.15]


def fused_setup(seed: int = 0):
    torch.manual_seed(seed)
    model = create_model("resnet8", num_classes=4)
    optimizer = torch.optim.SGD(parameter_groups(model, CONFIG), lr=CONFIG.lr, momentum=CONFIG.momentum,
                                nesterov=True, fused=True)
    use_tensor_lr(optimizer, torch.device("cpu"))
    step = build_train_step(model, optimizer, CONFIG, torch.device("cpu"), amp=False)
    return model, optimizer, step


def batches():
    generator = torch.Generator().manual_seed(1)
    sizes = [8, 8, 8, 8, 5, 8]  # one odd-sized batch, as the last batch of an epoch without drop_last
    return [(torch.randn(n, 3, 32, 32, generator=generator), torch.randint(0, 4, (n,), generator=generator))
            for n in sizes]


def train(step, optimizer, data):
    losses = []
    for lr, (images, labels) in zip(LRS, data):
        set_lr(optimizer, lr)
        loss, _ = step(images, labels)
        losses.append(loss.clone())
    return losses


def test_graphed_step_trains_exactly_like_the_eager_step():
    data = batches()
    eager_model, eager_optimizer, eager_step = fused_setup()
    eager_losses = train(eager_step, eager_optimizer, data)

    model, optimizer, step = fused_setup()
    graphed = GraphedStep(step, model, optimizer, capture=eager_capture)
    losses = train(graphed, optimizer, data)

    assert graphed.captured and graphed.eager_calls == 1  # the 5-image batch ran eagerly
    # The warm-up's updates were undone: the first replay is the run's first step, and so on, bit for bit.
    assert torch.equal(torch.stack(losses), torch.stack(eager_losses))
    for (name, ours), theirs in zip(model.state_dict().items(), eager_model.state_dict().values()):
        assert torch.equal(ours, theirs), name  # weights and BN running statistics
    for ours, theirs in zip(optimizer.state.values(), eager_optimizer.state.values()):
        assert torch.equal(ours["momentum_buffer"], theirs["momentum_buffer"])


def test_replays_write_the_same_output_tensors():
    model, optimizer, step = fused_setup()
    graphed = GraphedStep(step, model, optimizer, capture=eager_capture)
    data = batches()
    first_loss, _ = graphed(*data[0])
    second_loss, _ = graphed(*data[1])
    assert first_loss is second_loss  # static outputs: a caller copies what it keeps


def test_tensor_lr_is_shared_filled_in_place_and_saved_as_a_number():
    _, optimizer, _ = fused_setup()
    lr = optimizer.param_groups[0]["lr"]
    assert len(optimizer.param_groups) == 2 and all(g["lr"] is lr for g in optimizer.param_groups)
    set_lr(optimizer, 0.25)
    assert optimizer.param_groups[1]["lr"] is lr and current_lr(optimizer) == pytest.approx(0.25)
    saved = portable_state_dict(optimizer)
    assert all(type(group["lr"]) is float for group in saved["param_groups"])
    assert isinstance(optimizer.param_groups[0]["lr"], torch.Tensor)  # the live optimizer is untouched


def test_cpu_and_unsupported_setups_fall_back_or_refuse_with_the_reason():
    model, optimizer, step = fused_setup()
    cpu = torch.device("cpu")
    assert "CUDA device" in unsupported_reason(optimizer, device=cpu, distributed=False, checkpointing=False,
                                               deterministic=False)
    adam = torch.optim.Adam(model.parameters(), fused=False)
    assert "fused SGD" in unsupported_reason(adam, device=torch.device("cuda"), distributed=False,
                                             checkpointing=False, deterministic=False)
    assert "Distributed" in unsupported_reason(optimizer, device=torch.device("cuda"), distributed=True,
                                               checkpointing=False, deterministic=False)
    same, chosen = graphed_if_supported(step, model, optimizer, "auto", device=cpu)
    assert same is step and chosen.startswith("CUDA graphs: off")
    with pytest.raises(UserError, match="cuda_graphs = on, but CUDA graphs need a CUDA device"):
        graphed_if_supported(step, model, optimizer, "on", device=cpu)


def test_config_refuses_an_unknown_graph_mode():
    with pytest.raises(UserError, match="cuda_graphs"):
        TrainConfig(cuda_graphs="sometimes").validate()


def failing_capture(fn):
    raise RuntimeError("operation not permitted when stream is capturing")


def test_a_failed_capture_undoes_the_warm_up_and_continues_eagerly():
    data = batches()
    eager_model, eager_optimizer, eager_step = fused_setup()
    eager_losses = train(eager_step, eager_optimizer, data)
    model, optimizer, step = fused_setup()
    messages = []
    graphed = GraphedStep(step, model, optimizer, capture=failing_capture, log=messages.append)
    losses = train(graphed, optimizer, data)
    assert not graphed.captured and "training continues eagerly" in messages[0]
    assert torch.equal(torch.stack(losses), torch.stack(eager_losses))
    for ours, theirs in zip(model.state_dict().values(), eager_model.state_dict().values()):
        assert torch.equal(ours, theirs)


def test_a_failed_capture_stops_a_run_that_asked_for_graphs():
    model, optimizer, step = fused_setup()
    graphed = GraphedStep(step, model, optimizer, capture=failing_capture, strict=True)
    with pytest.raises(UserError, match="capture of the training step failed: operation not permitted"):
        graphed(*batches()[0])

