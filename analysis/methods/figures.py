"""Figures and table of the methods sweep (analysis/methods/lenet5_mnist.toml): every method on
one accuracy-vs-remaining chart, robust accuracy against the attack budget at the final
density, and the per-method table (method, % remaining, test accuracy, FGSM/PGD, seeds).

    python analysis/methods/figures.py SWEEP_DIR [--out DIR]
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

import maskstudy
from maskstudy.plots import accuracy_vs_remaining
from maskstudy.plots.figures import save_figure
from maskstudy.plots.study import study_args
from maskstudy.plots.style import apply_style, criterion_color, method_label, regime_linestyle

METHOD = ["criterion", "regime", "prune.schedule"]


def method_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per method and level, means over seeds: % remaining, test accuracy (mean, sd), FLOPs
    ratio, training iterations and every attack column; with the number of seeds."""
    attacks = [c for c in frame.columns if c.startswith(("fgsm_acc", "pgd_acc"))]
    values = ["percent_remaining", "test_acc", "flops_ratio", "train_iterations", *attacks]
    grouped = frame.groupby([*METHOD, "level"])
    table = grouped[values].mean()
    table.insert(2, "test_acc_sd", grouped["test_acc"].std())
    table["seeds"] = grouped["seed"].nunique()
    return table.reset_index()


def robustness(table: pd.DataFrame, attack: str = "pgd") -> plt.Figure:
    """Accuracy under ``attack`` vs eps (×255) at each method's last level, and the dense net."""
    apply_style()
    fig, ax = plt.subplots(figsize=(3.4, 2.6))
    columns = sorted(
        (c for c in table.columns if c.startswith(f"{attack}_acc_eps")),
        key=lambda c: float(c.rsplit("eps", 1)[1]),
    )
    eps = [255 * float(c.rsplit("eps", 1)[1]) for c in columns]
    dense = table[table["percent_remaining"] == 100].iloc[0]
    ax.plot(eps, [100 * dense[c] for c in columns], color="0.45", marker="s", ms=2.5, label="dense")
    for _, row in table.loc[table.groupby(METHOD)["level"].idxmax()].iterrows():
        ax.plot(
            eps,
            [100 * row[c] for c in columns],
            ls=regime_linestyle(row["regime"]),
            color=criterion_color(row["criterion"]),
            marker="o",
            ms=2.5,
            label=f"{method_label(row['criterion'], row['regime'])} ({row['percent_remaining']:.0f} %)",
        )
    ax.set_xlabel("attack budget ε (/255)")
    ax.set_ylabel(f"{attack.upper()} accuracy (%)")
    ax.legend(fontsize=6, loc="lower left")
    return fig


def main(argv: list[str] | None = None) -> None:
    args = study_args(__doc__, "lenet5_mnist.toml", argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    frame = maskstudy.open_sweep(args.sweep).frame(all_columns=True)
    table = method_table(frame)
    table.to_csv(out / "methods_table.csv", index=False)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table.round(4).to_string(index=False))
    figures = {"methods_accuracy": accuracy_vs_remaining(frame)}
    if any(c.startswith("pgd_acc") for c in table.columns):
        figures["methods_pgd"] = robustness(table)
    for name, fig in figures.items():
        save_figure(fig, out, name, args.formats)
    print(f"table and figures: {out}")


if __name__ == "__main__":
    main()
