"""Corrupt or truncated checkpoints: refused with a message naming the file; ``--resume`` falls back to the
previous good checkpoint and says so."""

from reliability_helpers import single_error_line

from resnetlab.cli import main
from resnetlab.train.checkpoint import MODEL_FILE, STATE_FILE, list_checkpoints, load_checkpoint


def truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def resume(run, capsys, *extra) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["train", "--resume", str(run), "--quiet", *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_resume_falls_back_from_truncated_weights(tiny_run, capsys):
    newest, previous = list_checkpoints(tiny_run)[:2]
    truncate(newest / MODEL_FILE)
    code, out, err = resume(tiny_run, capsys, "--epochs", "3")
    assert code == 0, err
    (warning,) = [line for line in out.splitlines() if "falling back" in line]
    assert str(newest / MODEL_FILE) in warning and f"previous checkpoint {previous}" in warning
    assert f"resuming {tiny_run} from step 3" in out
    assert load_checkpoint(list_checkpoints(tiny_run)[0]).step == 9  # trained on, replacing the torn step-6


def test_resume_falls_back_from_garbage_state(tiny_run, capsys):
    newest, previous = list_checkpoints(tiny_run)[:2]
    (newest / STATE_FILE).write_bytes(b"\x00garbage, not a torch file" * 10)
    code, out, err = resume(tiny_run, capsys)
    assert code == 0, err
    (warning,) = [line for line in out.splitlines() if "falling back" in line]
    assert str(newest / STATE_FILE) in warning and str(previous) in warning


def test_resume_with_every_checkpoint_corrupt_exits_2(tiny_run, capsys):
    for checkpoint in list_checkpoints(tiny_run):
        truncate(checkpoint / MODEL_FILE, 0.1)
    code, out, err = resume(tiny_run, capsys)
    assert code == 2
    assert "no loadable checkpoint" in single_error_line(err)
    assert sum("no earlier checkpoint to fall back to" in line or "falling back" in line
               for line in out.splitlines()) == 2  # each corrupt checkpoint was named


def test_eval_refuses_truncated_weights_naming_the_file(tiny_run, capsys):
    (best,) = list_checkpoints(tiny_run, "best")
    truncate(best / MODEL_FILE)
    assert main(["eval", str(tiny_run)]) == 2
    assert str(best / MODEL_FILE) in single_error_line(capsys.readouterr().err)
