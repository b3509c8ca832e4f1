"""``marl-rec-report RUN_OR_SWEEP_DIR...``: aggregate runs into a markdown table and plots.

Finds every ``metrics.json`` under the given folders (a single run, or a Hydra multirun
sweep), groups runs by (dataset, algorithm) — a run whose Hydra overrides set fields of its
``data`` or ``algo`` config gets its own row, labelled with them (``cql[cql_alpha=1.0]``), so
a hyperparameter sweep is not averaged as if it were seeds — and writes into the first folder:

- ``report.md``: mean ± std over seeds of the true return (simulated A/B test), the
  behaviour policy's return in the data, the Q estimate vs the true discounted value
  (overestimation ratio) and each OPE estimate;
- ``learning_curves.png``: true return during training, one panel per dataset;
- ``q_vs_true.png``: Q estimate against the true discounted return over training — the
  picture of extrapolation error (points far above the diagonal);
- ``ope_vs_true.png``: each OPE estimator's estimate against the true value.

``report.md`` ends with policy selection: per dataset and seed, the learner each estimate
(FQE, WDR, conservative FQE, the learner's own Q) ranks first, with the mean over seeds of
its true return and of its regret against the best learner of that seed.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from marl_rec.files import save_figure, write_text
from marl_rec.ope.metrics import regret_at_k

COLUMNS = [  # (metrics key, column title)
    ("true_return", "true return"),
    ("behaviour_return", "behaviour return"),
    ("true_value", "true value (γ)"),
    ("q_estimate", "Q estimate"),
    ("overestimation", "Q / true value"),
    ("ope_fqe", "FQE"),
    ("ope_wdr", "WDR"),
    ("ope_cfqe", "conservative FQE"),
]


SELECTORS = [("ope_fqe", "FQE"), ("ope_wdr", "WDR"), ("ope_cfqe", "conservative FQE"), ("q_estimate", "own Q")]


def hydra_overrides(folder: Path) -> list[str]:
    """The run's command-line overrides from Hydra's ``.hydra/overrides.yaml`` ([] when absent),
    without the ``+``/``~`` prefixes."""
    path = folder / ".hydra" / "overrides.yaml"
    return [str(o).lstrip("+~") for o in (yaml.safe_load(path.read_text()) or [])] if path.exists() else []


def label_variants(runs: list[tuple[Path, dict[str, Any]]], overrides: dict[Path, list[str]], group: str) -> None:
    """Append to ``metrics[group]`` the run's ``group.*`` overrides whose value differs between
    runs of the same name (``cql[cql_alpha=1.0]``); overrides shared by all of them label nothing."""
    fields = {folder: dict(o[len(group) + 1:].partition("=")[::2] for o in overrides[folder]
                           if o.startswith(group + "."))
              for folder, _ in runs}
    for name in {m[group] for _, m in runs}:
        members = [(folder, m) for folder, m in runs if m[group] == name]
        keys = {k for folder, _ in members for k in fields[folder]}
        varying = sorted(k for k in keys if len({fields[folder].get(k) for folder, _ in members}) > 1)
        for folder, m in members:
            set_fields = [f"{k}={fields[folder][k]}" for k in varying if k in fields[folder]]
            if set_fields:
                m[group] = f"{name}[{','.join(set_fields)}]"


def find_runs(folders: list[Path]) -> list[tuple[Path, dict[str, Any]]]:
    """Every run's ``metrics.json``; ``data`` and ``algo`` labelled by :func:`label_variants`."""
    runs = []
    for folder in folders:
        if not folder.exists():
            raise SystemExit(f"marl-rec-report: no such folder: {folder}")
        for path in sorted(folder.rglob("metrics.json")):
            if path.parent.name.startswith("round"):  # BCQ-EE sub-trainings
                continue
            try:
                metrics = json.loads(path.read_text())
            except json.JSONDecodeError as error:
                raise SystemExit(f"marl-rec-report: {path} is not valid JSON: {error}") from error
            if "algo" in metrics and "data" in metrics:
                metrics["data"], metrics["algo"] = str(metrics["data"]), str(metrics["algo"])
                runs.append((path.parent, metrics))
    overrides = {folder: hydra_overrides(folder) for folder, _ in runs}
    for group in ("data", "algo"):
        label_variants(runs, overrides, group)
    return runs


def _value(metrics: dict[str, Any], key: str) -> float | None:
    if key == "overestimation":
        q, v = metrics.get("q_estimate"), metrics.get("true_value")
        return q / v if isinstance(q, (int, float)) and isinstance(v, (int, float)) and v > 0 else None
    value = metrics.get(key)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def aggregate(runs: list[tuple[Path, dict[str, Any]]]) -> dict[tuple[str, str], dict[str, Any]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for _, metrics in runs:
        groups[(metrics["data"], metrics["algo"])].append(metrics)
    table = {}
    for key, members in sorted(groups.items()):
        row: dict[str, Any] = {"seeds": len(members),
                               "diverged": sum(m.get("status") == "diverged" for m in members)}
        for column, _ in COLUMNS:
            values = [v for v in (_value(m, column) for m in members) if v is not None]
            row[column] = (float(np.mean(values)), float(np.std(values)), len(values)) if values else None
        table[key] = row
    return table


def markdown(table: dict[tuple[str, str], dict[str, Any]]) -> str:
    header = ["dataset", "algorithm", "seeds"] + [title for _, title in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (data, algo), row in table.items():
        cells = [data, algo, str(row["seeds"]) + (f" ({row['diverged']} diverged)" if row["diverged"] else "")]
        for column, _ in COLUMNS:
            stat = row[column]
            if stat is None:
                cells.append("–")
            elif column == "overestimation":
                cells.append(f"{stat[0]:.2f}×")
            else:
                cells.append(f"{stat[0]:.1f} ± {stat[1]:.1f}" if stat[2] > 1 else f"{stat[0]:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def selection(runs: list[tuple[Path, dict[str, Any]]]) -> str:
    """Per dataset and seed, the learner each estimator ranks first among that seed's runs
    that have the estimate, and its regret = the best true return among those runs − the
    pick's true return; one cell per dataset lists the picks, then their mean true return and
    mean regret over seeds.
    Selecting by the learner's own Q shows why OPE is needed."""
    lines = ["| dataset | seeds | best by true return | " + " | ".join(f"{title}: pick (return, regret)"
                                                                   for _, title in SELECTORS) + " |",
             "|" + "---|" * (3 + len(SELECTORS))]
    by_data: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for _, m in runs:
        if _value(m, "true_return") is not None:
            by_data[m["data"]][int(m.get("seed", 0))].append(m)
    for data, by_seed in sorted(by_data.items()):
        seeds = dict(sorted(by_seed.items()))  # cells list the picks in seed order
        best = [max(members, key=lambda m: m["true_return"]) for members in seeds.values()]
        cells = [data, str(len(seeds)), ", ".join(f"{m['algo']} ({m['true_return']:.1f})" for m in best)]
        for key, _ in SELECTORS:
            picks, returns, regrets = [], [], []
            for members in seeds.values():
                scored = [m for m in members if _value(m, key) is not None]
                if scored:
                    estimates, truths = [_value(m, key) for m in scored], [m["true_return"] for m in scored]
                    pick = scored[int(np.argmax(estimates))]
                    picks.append(pick["algo"])
                    returns.append(pick["true_return"])
                    regrets.append(regret_at_k(estimates, truths, k=1))
            cells.append(f"{', '.join(picks)} ({np.mean(returns):.1f}, {np.mean(regrets):.1f})" if picks else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _histories(runs: list[tuple[Path, dict[str, Any]]]) -> list[tuple[dict[str, Any], dict[str, list]]]:
    out = []
    for folder, metrics in runs:
        path = folder / "eval_history.json"
        if path.exists():
            history = json.loads(path.read_text()).get("eval") or {}
            if history.get("step"):
                out.append((metrics, history))
    return out


def plot(runs: list[tuple[Path, dict[str, Any]]], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    histories = _histories(runs)
    datasets = sorted({m["data"] for m, _ in histories})
    if datasets:
        # one panel per dataset, one colour per algorithm (its seeds share it), one legend entry each
        algos = sorted({m["algo"] for m, _ in histories})
        colour = {a: plt.get_cmap("tab10")(i % 10) for i, a in enumerate(algos)}

        def panels(title: str) -> tuple[Any, Any]:
            fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.8), squeeze=False)
            fig.suptitle(title)
            return fig, axes[0]

        def finish(fig: Any, axes: Any, name: str) -> None:
            handles = [plt.Line2D([], [], color=colour[a], label=a) for a in algos]
            handles.append(plt.Line2D([], [], color="black", linestyle="--", label=legend_extra[name]))
            axes[-1].legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
            fig.tight_layout()
            written.append(out_dir / name)
            save_figure(fig, written[-1], dpi=110, bbox_inches="tight")
            plt.close(fig)

        legend_extra = {"learning_curves.png": "behaviour", "q_vs_true.png": "Q = true"}
        fig, axes = panels("true return during training")
        for ax, data in zip(axes, datasets):
            for metrics, history in histories:
                if metrics["data"] == data:
                    ax.plot(history["step"], history["eval/return"], color=colour[metrics["algo"]], alpha=0.8)
            behaviour = [m["behaviour_return"] for m, _ in histories if m["data"] == data]
            # median: BCQ-EE/RE runs report the behaviour of their grown dataset, the rest the logged one
            ax.axhline(float(np.median(behaviour)), color="black", linestyle="--")
            ax.set(title=data, xlabel="update", ylabel="true return (simulator)")
        finish(fig, axes, "learning_curves.png")

        fig, axes = panels("Q estimate vs true discounted return during training (overestimation above the line)")
        for ax, data in zip(axes, datasets):
            top = 1.0
            for metrics, history in histories:
                if metrics["data"] != data:
                    continue
                q, v = np.asarray(history["eval/q_estimate"]), np.asarray(history["eval/discounted_return"])
                ax.plot(v, q, marker="o", markersize=2.5, color=colour[metrics["algo"]], alpha=0.8)
                top = max(top, float(np.nanmax(np.abs(np.concatenate([q, v])))))
            ax.plot([0, top], [0, top], color="black", linestyle="--")
            ax.set(title=data, xlabel="true discounted return", ylabel="Q estimate on initial states")
        finish(fig, axes, "q_vs_true.png")

    estimators = [(key, title) for key, title in COLUMNS if key.startswith("ope_")]
    points = [(m, key) for _, m in runs for key, _ in estimators
              if _value(m, key) is not None and _value(m, "true_value") is not None]
    if points:
        fig, ax = plt.subplots(figsize=(5.5, 5))
        for key, title in estimators:
            xs = [_value(m, "true_value") for m, k in points if k == key]
            ys = [_value(m, key) for m, k in points if k == key]
            if xs:
                ax.scatter(xs, ys, label=title, s=18)
        values = [v for m, k in points for v in (_value(m, k), _value(m, "true_value"))]
        low, high = min(values), max(values)
        ax.plot([low, high], [low, high], color="black", linestyle="--", label="estimate = truth")
        ax.set(xlabel="true value (simulated A/B test)", ylabel="OPE estimate", title="OPE vs truth")
        ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(out_dir / "ope_vs_true.png")
        save_figure(fig, written[-1], dpi=110)
        plt.close(fig)
    return written


# ------------------------------------------------- tables over seeds (the experiment tasks)
def seed_table(per_seed: list[dict[str, Any]], key: str = "results") -> dict[str, dict[str, dict[str, float]]]:
    """{policy: {metric: {"mean", "std"}}} over seeds of ``per_seed[i][key][policy][metric]``
    (std with ddof=1; 0 for one seed). The policies and metrics are the first seed's."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for policy, metrics in per_seed[0][key].items():
        table[policy] = {}
        for metric in metrics:
            values = np.array([s[key][policy][metric] for s in per_seed], dtype=np.float64)
            table[policy][metric] = {"mean": float(values.mean()),
                                     "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
    return table


def format_seed_table(title: str, table: dict[str, dict[str, dict[str, float]]], columns: dict[str, str],
                      policy_width: int = 24, mean_width: int = 15, std_width: int = 6, digits: int = 2) -> str:
    """A plain-text table of :func:`seed_table`: one row per policy, a ``mean ± std`` cell for
    each metric of ``columns`` ({metric: column title}), under the line ``title``."""
    header = f"{'policy':<{policy_width}}" + "".join(f"{t:>{mean_width + 3 + std_width}}" for t in columns.values())
    lines = [title, header, "-" * len(header)]
    for policy, row in table.items():
        lines.append(f"{policy:<{policy_width}}" + "".join(
            f"{row[m]['mean']:>{mean_width}.{digits}f} ± {row[m]['std']:<{std_width}.{digits}f}" for m in columns))
    return "\n".join(lines)


def difference_vs_spread(a: np.ndarray, b: np.ndarray) -> dict[str, float | bool]:
    """Policy ``a`` against policy ``b`` over the same seeds: the difference of their means, the
    seed-to-seed spread (the larger of their stds, ddof=1; ddof=0 for one seed) and whether
    the difference exceeds it (``beats``)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ddof = 1 if len(a) > 1 else 0
    difference, spread = float(a.mean() - b.mean()), float(max(a.std(ddof=ddof), b.std(ddof=ddof)))
    return {"difference": difference, "spread": spread, "beats": bool(difference > spread)}


def json_safe(value: Any) -> Any:
    """A ``metrics.json``-ready copy: non-finite floats become None (read back as missing
    values), tuples lists."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def report(folders: list[Path]) -> tuple[str, list[Path]]:
    runs = find_runs(folders)
    if not runs:
        raise SystemExit(f"marl-rec-report: no metrics.json with 'algo' and 'data' under {', '.join(map(str, folders))}")
    aggregated = aggregate(runs)
    table = (markdown(aggregated) + "\n\nPolicy selection, per seed: the learner each estimate would ship, its true "
             "return and its regret against the best true return among the runs that have the estimate:\n\n"
             + selection(runs))
    out_dir = folders[0]
    write_text(out_dir / "report.md", table + "\n")
    return table, [out_dir / "report.md"] + plot(runs, out_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="marl-rec-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="run or multirun sweep folders")
    args = parser.parse_args(argv)
    table, written = report(args.folders)
    print(table)
    print("\nwrote: " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    main()
