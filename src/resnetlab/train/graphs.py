"""The whole training step (forward, backward, optimizer update) replayed as one CUDA graph.

A ResNet-20 step at batch 512 is a few hundred small kernels; launched one by one from Python, the GPU waits
on the host between them. Captured once and replayed, the step costs one launch. What capture needs, and how
this module keeps training exactly what the eager step would have done:

- Static memory: every batch is copied into the same input buffers, and the loss and correct count come back
  in the same output tensors each replay.
- No host synchronisation inside the step: the learning rate lives in a device tensor that ``set_lr`` fills
  (``optim.use_tensor_lr``), and the optimizer must be the fused SGD, whose update never reads a value back.
- Warm-up before capture (cuDNN autotuning, allocator, lazily created momentum buffers) runs real updates on the
  first batch; the weights, BN statistics and optimizer state are saved before it and put back after capture, so
  the first replayed step is the run's first step. Momentum buffers created by the warm-up are zeroed: with
  dampening 0 the update ``buf = momentum * 0 + grad`` equals the first step's ``buf = grad`` bit for bit.
- A batch of another shape (the last partial batch when ``drop_last`` is off) runs the eager step instead.

BatchNorm's running statistics are updated in place by the replayed kernels, so evaluation (eager, eval mode)
sees them as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from resnetlab.errors import UserError
from resnetlab.train.optim import use_tensor_lr
from resnetlab.train.step import StepFn

Capture = Callable[[Callable[[], Sequence[torch.Tensor]]], tuple[Callable[[], None], Sequence[torch.Tensor]]]

WARMUP_STEPS = 3


def cuda_graph_capture(fn: Callable[[], Sequence[torch.Tensor]]) -> tuple[Callable[[], None], Sequence[torch.Tensor]]:
    """Record ``fn``'s kernels in a CUDA graph; returns (replay, the outputs the replays write)."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):  # loader threads may allocate meanwhile
        outputs = fn()
    return graph.replay, outputs


def eager_capture(fn: Callable[[], Sequence[torch.Tensor]]) -> tuple[Callable[[], None], Sequence[torch.Tensor]]:
    """A stand-in for ``cuda_graph_capture`` that runs ``fn`` at each replay: the same contract on any device,
    which lets the CPU tests check everything around the capture (static buffers, warm-up, state restore)."""
    outputs = [tensor.clone() for tensor in fn()]

    def replay() -> None:
        for static, fresh in zip(outputs, fn()):
            static.copy_(fresh)

    return replay, outputs


def unsupported_reason(optimizer: torch.optim.Optimizer, *, device: torch.device, distributed: bool,
                       checkpointing: bool, deterministic: bool, resizing: bool = False) -> str:
    """Why the step cannot be captured here ("" when it can)."""
    defaults = optimizer.defaults
    reasons = [
        (device.type != "cuda", "CUDA graphs need a CUDA device"),
        (not isinstance(optimizer, torch.optim.SGD) or not defaults.get("fused"),
         "only steps with the fused SGD update are captured (Adam runs eagerly)"),
        (defaults.get("dampening", 0) != 0, "SGD dampening breaks the exact first-step restore"),
        (distributed, "DistributedDataParallel's gradient hooks are not captured"),
        (checkpointing, "activation checkpointing recomputes outside the graph"),
        (deterministic, "deterministic runs use the unfused optimizer"),
        (resizing, "progressive resizing changes the batch shape between epochs"),
    ]
    return next((reason for failed, reason in reasons if failed), "")


class GraphedStep:
    """Calls like the eager step; the first full-size batch triggers warm-up and capture, later ones replay."""

    def __init__(self, step: StepFn, model: nn.Module, optimizer: torch.optim.Optimizer,
                 capture: Capture = cuda_graph_capture, warmup_steps: int = WARMUP_STEPS, strict: bool = False,
                 log: Callable[[str], None] = print) -> None:
        self.step, self.model, self.optimizer = step, model, optimizer
        self.capture, self.warmup_steps = capture, warmup_steps
        self.strict, self.log = strict, log
        self.static_inputs: tuple[torch.Tensor, torch.Tensor] | None = None
        self.static_outputs: Sequence[torch.Tensor] = ()
        self.replay: Callable[[], None] | None = None
        self.failure = ""  # why capture failed, when it did (the step then stays eager)
        self.eager_calls = 0

    @property
    def captured(self) -> bool:
        return self.replay is not None

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.replay is None and not self.failure:
            self._capture(images, labels)
        if self.failure:
            return self.step(images, labels)
        static_images, static_labels = self.static_inputs
        if images.shape != static_images.shape or labels.shape != static_labels.shape:
            self.eager_calls += 1
            return self.step(images, labels)
        static_images.copy_(images)
        static_labels.copy_(labels)
        self.replay()
        loss, correct = self.static_outputs
        return loss, correct

    def _capture(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        static_images = images.clone()  # keeps the batch's memory format (channels_last)
        static_labels = labels.clone()
        saved = save_training_state(self.model, self.optimizer)
        with side_stream(images.device):
            for _ in range(self.warmup_steps):
                self.step(static_images, static_labels)
        self.optimizer.zero_grad(set_to_none=True)
        try:
            self.replay, self.static_outputs = self.capture(lambda: self.step(static_images, static_labels))
        except RuntimeError as error:
            # The warm-up's updates are undone either way, so an eager run continues exactly.
            restore_training_state(self.model, self.optimizer, saved)
            self.optimizer.zero_grad(set_to_none=True)
            message = " ".join(str(error).split())[:300]
            if self.strict:
                raise UserError(f"CUDA graph capture of the training step failed: {message}") from None
            self.failure = message
            self.log(f"CUDA graph capture failed, training continues eagerly: {message}")
            return
        restore_training_state(self.model, self.optimizer, saved)
        self.static_inputs = (static_images, static_labels)


@contextmanager
def side_stream(device: torch.device) -> Iterator[None]:
    """Warm-up for capture runs on a side stream on CUDA (as torch.cuda.graphs asks); elsewhere a no-op."""
    if device.type != "cuda":
        yield
        return
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    try:
        with torch.cuda.stream(stream):
            yield
    finally:
        torch.cuda.current_stream(device).wait_stream(stream)


def save_training_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Copies of the weights, buffers and optimizer tensors, to undo the warm-up's updates."""
    return {
        "model": {name: tensor.detach().clone() for name, tensor in model.state_dict().items()},
        "optimizer": {param: {key: value.detach().clone() for key, value in state.items()
                              if isinstance(value, torch.Tensor)}
                      for param, state in optimizer.state.items()},
    }


@torch.no_grad()
def restore_training_state(model: nn.Module, optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """Copy the saved values back in place (the graph holds these very tensors); state the warm-up created is
    zeroed, which for SGD's momentum buffers reproduces the first update exactly (see the module docstring)."""
    for name, tensor in model.state_dict().items():
        tensor.copy_(saved["model"][name])
    for param, state in optimizer.state.items():
        before = saved["optimizer"].get(param, {})
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and key in before:
                value.copy_(before[key])
            elif isinstance(value, torch.Tensor):
                value.zero_()


def graphed_if_supported(step: StepFn, model: nn.Module, optimizer: torch.optim.Optimizer, mode: str, *,
                         device: torch.device, distributed: bool = False, checkpointing: bool = False,
                         deterministic: bool = False, resizing: bool = False,
                         log: Callable[[str], None] = print) -> tuple[StepFn, str]:
    """Apply the ``cuda_graphs`` setting (auto | on | off); returns the step and a line saying what was chosen.

    ``auto`` captures wherever it is supported (ResNet-20 at batch 512: 2.2x on an H200, 1.8x on an H100;
    benchmarks/README.md) and trains eagerly if the capture fails; ``on`` refuses to run where it is not supported and stops if the capture fails.
    """
    reason = unsupported_reason(optimizer, device=device, distributed=distributed, checkpointing=checkpointing,
                                deterministic=deterministic, resizing=resizing)
    if mode == "on" and reason:
        raise UserError(f"cuda_graphs = on, but {reason}")
    if mode == "off" or reason:
        return step, f"CUDA graphs: off ({reason or 'cuda_graphs = off'})"
    use_tensor_lr(optimizer, device)
    graphed = GraphedStep(step, model, optimizer, strict=mode == "on", log=log)
    return graphed, "CUDA graphs: on (the whole training step is replayed)"
