"""Activation checkpointing: same outputs, gradients and BN statistics, far fewer saved activations."""

import pytest
import torch

from resnetlab.models import create_model
from resnetlab.models.checkpointing import PER_STAGE


def saved_activation_bytes(model, x):
    """Bytes autograd keeps for the backward pass: the activation memory checkpointing is meant to cut."""
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = model(x)
    return total, output


def twin_models(name):
    torch.manual_seed(0)
    plain = create_model(name)
    checkpointed = create_model(name)
    checkpointed.load_state_dict(plain.state_dict())
    return plain, checkpointed


@pytest.mark.parametrize("name, every", [("resnet56", 3), ("resnet56", PER_STAGE), ("resnet29v2", 1)])
def test_same_outputs_gradients_and_running_statistics(name, every):
    plain, checkpointed = twin_models(name)
    checkpointed.set_grad_checkpointing(every)
    x = torch.randn(4, 3, 32, 32)
    plain(x).square().mean().backward()
    checkpointed(x).square().mean().backward()
    for (key, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=key)
    for (key, a), b in zip(plain.named_buffers(), checkpointed.buffers()):
        assert torch.equal(a, b), key  # recomputation must not update BN statistics twice


def test_cuts_saved_activations_at_least_3x():
    plain, checkpointed = twin_models("resnet110")
    checkpointed.set_grad_checkpointing(6)
    x = torch.randn(2, 3, 32, 32)
    full, out_full = saved_activation_bytes(plain, x)
    reduced, out_reduced = saved_activation_bytes(checkpointed, x)
    assert full / reduced >= 3
    torch.testing.assert_close(out_full, out_reduced)


def test_no_effect_in_eval_and_bad_interval_refused():
    plain, checkpointed = twin_models("resnet20")
    checkpointed.set_grad_checkpointing(2)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(plain.eval()(x), checkpointed.eval()(x))
    with pytest.raises(ValueError, match="checkpointing interval"):
        checkpointed.set_grad_checkpointing(-5)
