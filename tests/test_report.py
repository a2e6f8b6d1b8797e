"""`maskstudy analyze`: a sweep's overlap, structure and stability tables written to disk."""

from __future__ import annotations

import pandas as pd
import pytest

from maskstudy.analysis.overlap import jaccard
from maskstudy.cli import main
from maskstudy.errors import StoreError
from maskstudy.runs.discover import open_runs
from maskstudy.runs.store import open_run
from maskstudy.runs.table import varying_fields


@pytest.fixture(scope="module")
def sweep_dir(conv_sweep_dir):
    return conv_sweep_dir


def test_analyze_writes_every_table(sweep_dir, capsys):
    assert main(["analyze", str(sweep_dir)]) == 0
    printed = capsys.readouterr().out
    out = sweep_dir / "analysis"
    for name in ("overlap", "structure", "stability"):
        assert (out / f"{name}.csv").is_file()
        assert f"{name}.csv" in printed
    overlap = pd.read_csv(out / "overlap.csv")
    runs = open_runs(sweep_dir)
    assert varying_fields(runs) == ["prune.criterion", "seed"]
    assert set(overlap["along"]) == {"prune.criterion", "seed", "level"}
    layers = len(runs[0].mask(0)) + 1  # every masked tensor and the whole network
    # along seed: one pair per criterion, at levels 0, 1, 2
    assert len(overlap.query("along == 'seed'")) == 2 * 3 * layers
    # along level: 3 pairs of levels per run, 4 runs
    assert len(overlap.query("along == 'level'")) == 4 * 3 * layers
    # IMP masks of one run are nested; masks of two seeds at level 2 are not
    assert overlap.query("along == 'level'")["nested"].all()
    seeds = overlap.query("along == 'seed' and level == 2 and layer == 'all'")
    assert not seeds["nested"].any()
    # the table's Jaccard is the Jaccard of the stored masks
    row = seeds.iloc[0]
    expected = jaccard(
        open_run(sweep_dir / row.run_a).mask(2), open_run(sweep_dir / row.run_b).mask(2)
    )
    assert row.jaccard == pytest.approx(expected, abs=1e-12)
    structure = pd.read_csv(out / "structure.csv")
    assert {"kernel", "filter", "channel"} <= set(structure["unit"])
    stability = pd.read_csv(out / "stability.csv")
    assert set(stability["level"]) == {0, 1, 2}


def test_analyze_to_another_directory(sweep_dir, tmp_path, capsys):
    assert main(["analyze", str(sweep_dir), "--out", str(tmp_path / "tables")]) == 0
    assert (tmp_path / "tables" / "overlap.csv").is_file()


def test_open_runs_reads_run_dirs_and_folders(sweep_dir, tmp_path):
    runs = open_runs(sweep_dir)
    assert len(runs) == 4
    one = open_runs(runs[0].path)
    assert [r.run_id for r in one] == [runs[0].run_id]
    with pytest.raises(StoreError, match="holds no runs"):
        open_runs(tmp_path)
    with pytest.raises(StoreError, match="not a directory"):
        open_runs(tmp_path / "missing")


def test_analyze_refuses_runs_without_levels(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["analyze", str(tmp_path / "empty")]) == 2
    assert "holds no runs" in capsys.readouterr().err


def test_lmc_command_writes_the_curve(sweep_dir, capsys):
    run = open_runs(sweep_dir)[0]
    assert main(["lmc", str(run.path), "--level", "1", "--points", "5", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "error barrier" in printed
    curve = pd.read_csv(run.path / "analysis" / "lmc_level01_seeds1-2.csv")
    assert len(curve) == 10 and set(curve["split"]) == {"test", "train"}
    assert curve["alpha"].min() == 0 and curve["alpha"].max() == 1
    assert main(["lmc", str(run.path), "--level", "7"]) == 2
    assert "completed levels: [0, 1, 2]" in capsys.readouterr().err
