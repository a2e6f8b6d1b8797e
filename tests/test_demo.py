"""The demo end to end at its smallest: a sweep on digits, results and analysis tables, figures."""

import pandas as pd

from maskstudy.demo import demo


def test_demo_writes_results_tables_and_figures(tmp_path):
    out, report = demo(tmp_path / "demo", levels=1, epochs=1, progress=False)
    frame = pd.read_csv(out / "results.csv")
    # 2 models x 2 criteria x 3 regimes x 2 seeds, levels 0 and 1; a reinit branch of each
    # magnitude · rewind run (2 models x 2 seeds), level 1 only
    assert len(frame) == 48 + 4
    assert set(frame["regime"]) == {"rewind", "reinit_prune", "finetune", "reinit"}
    assert set(frame["model"]) == {"lenet300_100", "conv2"}
    runs, branches = frame[frame["branch"].isna()], frame[frame["branch"] == "reinit"]
    assert runs.groupby("run_id")["level"].apply(lambda levels: sorted(levels) == [0, 1]).all()
    assert len(branches) == 4 and set(branches["level"]) == {1}
    parents = frame.set_index("run_id").loc[branches["parent"]]
    assert (parents["regime"] == "rewind").all() and (parents["criterion"] == "magnitude").all()
    assert frame["test_acc"].min() > 0.3  # one epoch on 10 classes: far above chance (0.1)
    assert (out / "runs" / "sweep.toml").exists()
    assert (out / "analysis" / "overlap.csv").stat().st_size > 0
    # each figure is drawn per model; the conv figures only for the conv net
    for model in ("lenet300_100", "conv2"):
        for fmt in ("pdf", "png"):
            hits = list((out / "figures").glob(f"p1_accuracy__model-{model}__*.{fmt}"))
            assert len(hits) == 1 and hits[0].stat().st_size > 1000
    assert any(name.startswith("p5_conv_masks__model-conv2") for name in report.drawn)
    assert all(not name.startswith("p5_conv_masks__model-lenet") for name in report.drawn)
    assert "p8_layer_density" in report.skipped  # one scope: nothing to compare
