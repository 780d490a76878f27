"""--amp auto: bf16 autocast only where the processor computes bf16 natively; forced either way; recorded."""

import json

import pytest
import torch

from resnetlab.cli import main
from resnetlab.train import loop, precision
from resnetlab.train.checkpoint import list_checkpoints, load_checkpoint
from resnetlab.train.config import resolve_config
from resnetlab.train.loop import fit
from resnetlab.train.precision import CpuFacts, choose_precision, parse_cpuinfo

# The first lines of /proc/cpuinfo on two machines of this project (flags shortened to those around the point).
SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""
EPYC_MILAN = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 avx avx2 fma f16c bmi2 sha_ni vaes
"""
EPYC_ZEN5_VM = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq avx512bw avx512vl avx_vnni avx512_bf16 avx512_vnni
processor\t: 1
cpu family\t: 99
"""  # AVX512-BF16 without AMX; a VM that names the processor only "AMD EPYC"
COOPER_LAKE_LIKE = "model name\t: Intel Xeon\nflags\t\t: avx2 avx512f avx512_bf16\n"  # AVX512-BF16, no AMX
SKYLAKE_X = "model name\t: Intel Xeon Gold 6148\nflags\t\t: avx2 fma avx512f avx512bw avx512_vnni\n"  # no bf16


def facts(text: str, capability: str = "AVX2", onednn_bf16: bool | None = None) -> CpuFacts:
    """What cpu_facts() would say on that machine (oneDNN has a bf16 path from AVX512-BW on)."""
    model, generation, flags = parse_cpuinfo(text)
    return CpuFacts(model, capability, flags, "avx512f" in flags if onednn_bf16 is None else onednn_bf16,
                    generation)


@pytest.mark.parametrize(("text", "native"), [(SAPPHIRE_RAPIDS, True), (COOPER_LAKE_LIKE, True),
                                              (EPYC_ZEN5_VM, True), (EPYC_MILAN, False),
                                              (SKYLAKE_X, False)])
def test_auto_picks_bf16_exactly_where_the_cpu_has_native_bf16(text, native):
    chosen = choose_precision("auto", "cpu", facts(text, "AVX512" if "avx512f" in text else "AVX2"))
    assert chosen.bf16 is native and chosen.name == ("bf16" if native else "fp32")
    assert ("amx_bf16" in chosen.reason or "avx512_bf16" in chosen.reason) if native else \
        "no native bf16" in chosen.reason


def test_without_onednns_bf16_path_auto_stays_fp32():
    chosen = choose_precision("auto", "cpu", facts(SAPPHIRE_RAPIDS, "AVX512", onednn_bf16=False))
    assert not chosen.bf16 and "oneDNN has no bf16 path" in chosen.reason


@pytest.mark.parametrize("text", [SAPPHIRE_RAPIDS, EPYC_MILAN])
def test_the_user_can_force_either(text):
    cpu = facts(text)
    assert choose_precision("bf16", "cpu", cpu).bf16 and not choose_precision("off", "cpu", cpu).bf16
    forced = choose_precision("bf16", "cpu", cpu).line()
    assert ("emulated" in forced) is (not cpu.native_bf16)  # says that it will be slow where it will be


def test_cpuinfo_parsing_and_the_line_bench_prints():
    cpu = facts(SAPPHIRE_RAPIDS, "AVX512")
    assert cpu.model == "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz"
    assert cpu.speed_flags() == ["avx2", "fma", "avx512f", "avx512_vnni", "amx_bf16", "avx512_bf16", "amx_tile"]
    assert cpu.describe().endswith("(torch AVX512; avx2 fma avx512f avx512_vnni amx_bf16 avx512_bf16 amx_tile; "
                                   "native bf16)")
    assert facts(EPYC_MILAN).describe() == "AMD EPYC 7B13 (torch AVX2; avx2 fma; no native bf16)"
    zen5 = facts(EPYC_ZEN5_VM, "AVX512")
    assert zen5.generation == "family 26 model 2"  # the first processor's, not the next one's
    assert zen5.describe() == ("AMD EPYC, family 26 model 2 (torch AVX512; avx2 fma avx512f avx512_vnni "
                               "avx512_bf16; native bf16)")
    assert zen5.to_dict()["cpu_generation"] == "family 26 model 2"


def test_this_machines_facts_are_read():
    cpu = precision.cpu_facts()
    assert cpu.model and cpu.capability == torch.backends.cpu.get_cpu_capability()
    if "avx512_bf16" not in cpu.flags and "amx_bf16" not in cpu.flags and "avx512bw" not in cpu.flags:
        assert not cpu.onednn_bf16  # an AVX2-only processor: oneDNN itself says it has no bf16 path
    assert choose_precision("auto", "cpu").bf16 is cpu.native_bf16


def test_cuda_auto_follows_the_gpus_bf16_units(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "GPU")
    for native in (True, False):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True, n=native: n)
        assert choose_precision("auto", "cuda").bf16 is native


def test_unknown_choice_is_refused():
    with pytest.raises(ValueError, match="auto, bf16, off"):
        choose_precision("fp16", "cpu")


def run_config(data, **changes):
    values = {"model": "resnet8", "data": str(data), "iterations": 6, "epochs": 0, "val_split": 12, "batch_size": 16,
              "log_every": 2, "tensorboard": False}
    return resolve_config("paper", overrides={**values, **changes})


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_training_uses_the_rule_says_so_and_records_it(tiny_data, tmp_path, monkeypatch, native, expected):
    text = SAPPHIRE_RAPIDS if native else EPYC_MILAN
    real = precision.cpu_facts()
    monkeypatch.setattr(precision, "cpu_facts", lambda: facts(text))
    seen = []
    monkeypatch.setattr("resnetlab.train.loop.build_train_step",
                        lambda *args, **kwargs: seen.append(args[4]) or build_train_step(*args, **kwargs))
    lines = []
    fit(run_config(tiny_data, device="cpu"), tmp_path / "run", show_progress=False, log=lines.append)
    assert seen == [expected == "bf16"]
    assert any(line.startswith(f"precision: {'bf16 autocast' if native else 'fp32'} (--amp auto") for line in lines)
    recorded = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert recorded["precision"]["precision"] == expected and recorded["precision"]["requested"] == "auto"
    assert recorded["cpu_native_bf16"] is real.native_bf16 and recorded["cpu_model"] == real.model  # this machine


def test_bf16_training_on_the_cpu_runs_and_learns(tiny_data, tmp_path, monkeypatch):
    """Forced bf16 on whatever CPU runs the tests (emulated where not native): finite, falling losses, weights that
    moved from their initialisation and stay fp32, a net above chance (1/3), recorded."""
    initial, real_build_model = {}, loop.build_model

    def build_model(*args, **kwargs):
        model = real_build_model(*args, **kwargs)
        initial.update({key: value.detach().clone() for key, value in model.state_dict().items()})
        return model

    monkeypatch.setattr(loop, "build_model", build_model)
    run = tmp_path / "bf16"
    results = fit(run_config(tiny_data, device="cpu", amp="bf16", iterations=12, lr=0.05), run,
                  show_progress=False, log=lambda _: None)
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(row["train_loss"])) for row in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert results["final_test_acc"] > 0.5
    weights = load_checkpoint(list_checkpoints(run)[0]).model_state
    assert all(value.dtype in (torch.float32, torch.int64) for value in weights.values())  # autocast, not .bfloat16()
    for key in ("conv1.weight", "layer3.0.conv2.weight", "fc.weight"):
        assert not torch.equal(weights[key], initial[key]), key
    assert json.loads((run / "environment.json").read_text())["precision"]["precision"] == "bf16"


def test_eval_and_predict_take_amp_and_say_what_they_chose(tiny_data, tmp_path, capsys):
    """bf16 changes the rounding, not the answer: the accuracy to one image, the loss to bf16's precision and the
    predicted class are those of fp32."""
    run = tmp_path / "run"
    fit(run_config(tiny_data, device="cpu"), run, show_progress=False, log=lambda _: None)
    said = {"off": "precision: fp32 (--amp off", "bf16": "precision: bf16 autocast (--amp bf16"}
    image = next((tiny_data / "test").rglob("*.png"))
    reports, predicted = {}, {}
    for amp in ("off", "bf16"):
        capsys.readouterr()
        assert main(["eval", str(run), "--data", str(tiny_data), "--device", "cpu", "--amp", amp, "--json"]) == 0
        out = capsys.readouterr()
        reports[amp] = json.loads(out.out)
        assert out.err.startswith(said[amp])
        assert main(["predict", str(run), str(image), "--amp", amp, "--json"]) == 0
        out = capsys.readouterr()
        predicted[amp] = json.loads(out.out)[0]["top"]
        assert out.err.startswith(said[amp])
    assert reports["bf16"]["accuracy"] == pytest.approx(reports["off"]["accuracy"], abs=1 / reports["off"]["images"])
    assert reports["bf16"]["loss"] == pytest.approx(reports["off"]["loss"], rel=1e-2)
    assert predicted["bf16"][0]["class"] == predicted["off"][0]["class"]


def build_train_step(*args, **kwargs):
    from resnetlab.train.step import build_train_step as real

    return real(*args, **kwargs)
