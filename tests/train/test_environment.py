"""Process settings the training loop applies (on a CPU, malloc keeps freed activation memory for reuse) and the
command it records."""

import platform
import subprocess
import sys
from pathlib import Path

import pytest

import resnetlab
from resnetlab.train.environment import command_line

glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                           reason="mallopt is glibc's")

# A few training steps of a small net in a fresh process; prints the page faults per step after warm-up.
STEPS = """
import resource, sys, torch
from resnetlab.models import create_model
from resnetlab.train.environment import keep_freed_memory_for_reuse
if sys.argv[1] == "keep":
    assert keep_freed_memory_for_reuse()
torch.manual_seed(0)
model = create_model("resnet8")
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
def step():
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""


def faults_per_step(mode: str) -> float:
    result = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, timeout=120,
                            check=True)
    return float(result.stdout.split()[-1])


@pytest.mark.slow  # two fresh processes that import torch and train
@glibc
def test_training_steps_stop_faulting_in_fresh_pages():
    default, kept = faults_per_step("default"), faults_per_step("keep")
    # glibc's defaults fault in fresh pages every step: 400 to 9,800 per step of ResNet-8 at batch 64 here (its
    # mmap threshold adapts to what was freed before, so the count varies from process to process)
    assert default > 100
    assert kept < default / 20


def test_the_recorded_command_is_one_a_user_can_type_again():
    main_file = str(Path(resnetlab.__file__).with_name("__main__.py"))
    assert command_line([main_file, "train", "--out", "runs/a b"]) == "python -m resnetlab train --out 'runs/a b'"
    assert command_line(["/opt/venv/bin/resnetlab", "eval", "runs/x"]) == "/opt/venv/bin/resnetlab eval runs/x"
