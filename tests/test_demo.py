"""The demo end to end at its smallest: a sweep on digits, a results table and a figure on disk."""

import pandas as pd

from maskstudy.demo import demo


def test_demo_writes_results_and_figures(tmp_path):
    out = demo(tmp_path / "demo", levels=1)
    frame = pd.read_csv(out / "results.csv")
    # 2 criteria x 3 regimes x 2 seeds, levels 0 and 1
    assert len(frame) == 24
    assert set(frame["regime"]) == {"rewind", "reinit", "finetune"}
    assert frame.groupby("run_id")["level"].apply(lambda levels: sorted(levels) == [0, 1]).all()
    assert frame["test_acc"].min() > 0.5
    for fmt in ("pdf", "png"):
        assert (out / "figures" / f"accuracy_vs_remaining.{fmt}").stat().st_size > 1000
    assert (out / "runs" / "sweep.toml").exists()
