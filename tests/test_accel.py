"""train.compile and train.precision (train/accel.py): fallbacks on CPU, exact zeros under bf16."""

import pytest
import torch

from maskstudy.errors import ConfigError
from maskstudy.runs.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from maskstudy.runs.run import run


def config(**train) -> RunConfig:
    return RunConfig(
        data=DataConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_size=128),
        model=ModelConfig(name="lenet300_100", width=0.1),
        train=TrainConfig(
            **{"lr": 0.05, "momentum": 0.9, "batch_size": 32, "duration": "8it", **train}
        ),
        levels=1,
    )


def same_weights(a, b) -> bool:
    return all(
        torch.equal(a.weights(lv)[n], b.weights(lv)[n]) for lv in a.levels for n in a.weights(lv)
    )


def test_capture_falls_back_to_the_eager_step_on_cpu_and_says_why(tmp_path):
    eager = run(config(), tmp_path / "eager", progress=False)
    graphs = run(config(compile="graphs"), tmp_path / "graphs", progress=False)
    auto = run(config(compile="auto"), tmp_path / "auto", progress=False)
    assert "step_mode" not in eager.level_metrics(1)  # the default leaves metrics as they were
    assert graphs.level_metrics(1)["step_mode"] == (
        "eager (CUDA graphs need a CUDA device, this is cpu), fp32"
    )
    assert auto.level_metrics(1)["step_mode"] == "eager, fp32"
    assert same_weights(eager, graphs) and same_weights(eager, auto)  # the same arithmetic
    assert len({eager.run_id, graphs.run_id, auto.run_id}) == 3  # but other configs


def test_bf16_autocast_keeps_weights_fp32_and_pruned_weights_exactly_zero(tmp_path):
    adam = {"optimizer": "adam", "lr": 1e-3, "momentum": 0.0}
    r = run(config(precision="bf16", **adam), tmp_path / "bf16", progress=False)
    assert r.level_metrics(1)["step_mode"] == "eager, bf16"
    mask, w = r.mask(1), r.weights(1)
    for name, m in mask.items():
        assert w[name].dtype == torch.float32
        pruned = w[name][~m]
        assert not pruned.any() and not torch.signbit(pruned).any()
        assert w[name][m].count_nonzero() == m.sum()  # the kept ones trained
    fp32 = run(config(**adam), tmp_path / "fp32", progress=False)
    assert not same_weights(r, fp32)  # bf16 arithmetic does round differently


def test_tf32_on_cpu_is_fp32_and_unknown_modes_are_refused(tmp_path):
    tf32 = run(config(precision="tf32"), tmp_path / "tf32", progress=False)
    eager = run(config(), tmp_path / "eager", progress=False)
    assert tf32.level_metrics(1)["step_mode"] == "eager, fp32 (TF32 exists on CUDA only)"
    assert same_weights(tf32, eager)
    with pytest.raises(ConfigError, match="train.compile = 'jit'.*off, auto, compile, graphs"):
        TrainConfig(compile="jit")
    with pytest.raises(ConfigError, match="train.precision = 'fp16'.*fp32, bf16, tf32"):
        TrainConfig(precision="fp16")


@pytest.mark.slow
def test_torch_compile_trains_like_eager_within_rounding(tmp_path):
    compiled = run(config(compile="compile"), tmp_path / "compiled", progress=False)
    eager = run(config(), tmp_path / "eager", progress=False)
    assert compiled.level_metrics(1)["step_mode"] == "compile, fp32"
    for name, m in compiled.mask(1).items():
        a, b = compiled.weights(1)[name], eager.weights(1)[name]
        assert torch.allclose(a, b, atol=1e-5) and not a[~m].any()
