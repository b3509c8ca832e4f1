"""``marl-rec-report RUN_OR_SWEEP_DIR...``: aggregate runs into a markdown table and plots.

Finds every ``metrics.json`` under the given folders (a single run, or a Hydra multirun
sweep), groups runs by (dataset, algorithm) — a run whose Hydra overrides set fields of its
``data`` or ``algo`` config gets its own row, labelled with them (``cql[cql_alpha=1.0]``), so
a hyperparameter sweep is not averaged as if it were seeds — and writes into the first folder:

- ``report.md``: mean ± std (ddof = 1) over seeds of the true return (simulated A/B test), the
  behaviour policy's return (from the same A/B test, on the same users, where the logging
  policy is known; the logged episodes' mean for online buffers — the run's
  ``behaviour_source``), the Q estimate vs the true discounted value
  (overestimation ratio) and each OPE estimate;
- ``learning_curves.png``: true return during training, one panel per dataset;
- ``q_vs_true.png``: Q estimate against the true discounted return over training — the
  picture of extrapolation error (points far above the diagonal);
- ``ope_vs_true.png``: each OPE estimator's estimate against the true value.

``report.md`` ends with policy selection: per dataset and seed, the learner each estimate
(FQE, WDR, conservative FQE, the learner's own Q) ranks first, with the mean over seeds of
its true return and of its regret against the best learner of that seed.

Each run is read defensively, so one broken run never stops the report: a run whose
``metrics.json`` is unreadable (not UTF-8, not JSON, not an object, a non-integer seed) is
listed by name under "Runs left out" and skipped; a Hydra run folder without
``metrics.json`` (killed, or still running) is counted in its row as ``2 (+1 incomplete)``;
an unreadable ``overrides.yaml`` or ``eval_history.json`` only costs that run its label or
its curves, with a note. A run whose training diverged is counted in its row as ``3 (1 diverged)``;
its figures are averaged in where it was evaluated at its last good checkpoint (its
``metrics.json`` has ``evaluated_update``), and it adds none where it was not.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
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


def _read_json(path: Path) -> Any:
    """The JSON in ``path``; ValueError saying what is wrong with the file (named by its name)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path.name} is not UTF-8 text") from None
    except OSError as error:
        raise ValueError(f"{path.name} cannot be read ({error.strerror})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path.name} is not valid JSON ({error.msg}, line {error.lineno}; truncated?)") from None


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{path.name} is not UTF-8 text") from None
    except OSError as error:
        raise ValueError(f"{path.name} cannot be read ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise ValueError(f"{path.name} is not valid YAML ({str(error).splitlines()[0]})") from None


def hydra_overrides(folder: Path) -> list[str]:
    """The run's command-line overrides from Hydra's ``.hydra/overrides.yaml`` ([] when absent),
    without the ``+``/``~`` prefixes; ValueError when the file is not a YAML list."""
    path = folder / ".hydra" / "overrides.yaml"
    if not path.exists():
        return []
    overrides = _read_yaml(path) or []
    if not isinstance(overrides, list):
        raise ValueError(f"{path.name} is not a list of overrides")
    return [str(o).lstrip("+~") for o in overrides]


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


@dataclass
class RunScan:
    """What :func:`scan_runs` found: the complete runs, the incomplete ones (a Hydra run folder
    without ``metrics.json``) with their (data, algo) label, and notes on runs left out or
    read in part (``(folder, reason)``)."""

    runs: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    incomplete: list[tuple[Path, tuple[str, str]]] = field(default_factory=list)
    notes: list[tuple[Path, str]] = field(default_factory=list)


def _run_metrics(path: Path) -> dict[str, Any] | None:
    """A run's ``metrics.json`` checked for what the report reads; None when it is not an
    offline-training run (no ``algo``/``data``: another experiment's metrics); ValueError
    naming what is wrong."""
    metrics = _read_json(path)
    if not isinstance(metrics, dict):
        raise ValueError(f"metrics.json holds a {type(metrics).__name__}, not an object")
    if "algo" not in metrics or "data" not in metrics:
        return None
    seed = metrics.get("seed", 0)
    if isinstance(seed, float) and seed.is_integer():
        seed = int(seed)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"metrics.json: seed {seed!r} is not an integer")
    metrics["seed"], metrics["data"], metrics["algo"] = seed, str(metrics["data"]), str(metrics["algo"])
    return metrics


def _configured_label(folder: Path) -> tuple[str, str] | None:
    """(data, algo) of an incomplete run from its ``.hydra/config.yaml``; None if it is not an
    offline-training run or the file cannot say."""
    try:
        config = _read_yaml(folder / ".hydra" / "config.yaml")
    except ValueError:
        return None
    if not isinstance(config, dict) or "fusion_offline" not in str(config.get("task", "")):
        return None
    data, algo = config.get("data"), config.get("algo")
    if not isinstance(data, dict) or not isinstance(algo, dict) or "name" not in data or "name" not in algo:
        return None
    return str(data["name"]), str(algo["name"])


def scan_runs(folders: list[Path]) -> RunScan:
    """Every run under ``folders``: a folder with ``metrics.json`` or a Hydra run folder
    (``.hydra/config.yaml``), read defensively (see the module docstring); ``data`` and
    ``algo`` labelled by :func:`label_variants`."""
    scan = RunScan()
    candidates: set[Path] = set()
    for folder in folders:
        if not folder.exists():
            raise SystemExit(f"marl-rec-report: no such folder: {folder}")
        candidates.update(path.parent for path in folder.rglob("metrics.json"))
        candidates.update(path.parent.parent for path in folder.rglob(".hydra/config.yaml"))
    labelled: list[tuple[Path, dict[str, Any]]] = []  # complete and incomplete runs, labelled together
    for run in sorted(candidates):
        if run.name.startswith("round"):  # BCQ-EE sub-trainings
            continue
        if (run / "metrics.json").exists():
            try:
                metrics = _run_metrics(run / "metrics.json")
            except ValueError as error:
                scan.notes.append((run, f"left out: {error}"))
                continue
            if metrics is not None:
                scan.runs.append((run, metrics))
                labelled.append((run, metrics))
            continue
        label = _configured_label(run)
        if label is None:
            scan.notes.append((run, "incomplete (no metrics.json) and not an offline-training run"))
        else:
            labelled.append((run, {"data": label[0], "algo": label[1], "incomplete": True}))
    overrides: dict[Path, list[str]] = {}
    for run, _ in labelled:
        try:
            overrides[run] = hydra_overrides(run)
        except ValueError as error:
            overrides[run] = []
            scan.notes.append((run, f"labelled without its overrides: {error}"))
    for group in ("data", "algo"):
        label_variants(labelled, overrides, group)
    scan.incomplete = [(run, (m["data"], m["algo"])) for run, m in labelled if m.get("incomplete")]
    return scan


def find_runs(folders: list[Path]) -> list[tuple[Path, dict[str, Any]]]:
    """Every complete run's ``metrics.json`` (see :func:`scan_runs`)."""
    return scan_runs(folders).runs


def _value(metrics: dict[str, Any], key: str) -> float | None:
    if key == "overestimation":
        q, v = _value(metrics, "q_estimate"), _value(metrics, "true_value")
        return q / v if q is not None and v is not None and v > 0 else None
    value = metrics.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) else None


def seed_std(values: Sequence[float] | np.ndarray) -> float:
    """The seed-to-seed spread of every table and bar: the sample std (ddof = 1); 0 for one seed."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def aggregate(runs: list[tuple[Path, dict[str, Any]]],
              incomplete: list[tuple[Path, tuple[str, str]]] = ()) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (data, algo): seeds, diverged and incomplete runs, and each column's mean, std and count."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for _, metrics in runs:
        groups[(metrics["data"], metrics["algo"])].append(metrics)
    unfinished: dict[tuple[str, str], int] = defaultdict(int)
    for _, label in incomplete:
        unfinished[label] += 1
        groups.setdefault(label, [])
    table = {}
    for key, members in sorted(groups.items()):
        row: dict[str, Any] = {"seeds": len(members), "incomplete": unfinished[key],
                               "diverged": sum(m.get("status") == "diverged" for m in members)}
        for column, _ in COLUMNS:
            values = [v for v in (_value(m, column) for m in members) if v is not None]
            row[column] = (float(np.mean(values)), seed_std(values), len(values)) if values else None
        table[key] = row
    return table


def markdown(table: dict[tuple[str, str], dict[str, Any]]) -> str:
    header = ["dataset", "algorithm", "seeds"] + [title for _, title in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (data, algo), row in table.items():
        seeds = str(row["seeds"]) + (f" (+{row['incomplete']} incomplete)" if row.get("incomplete") else "")
        cells = [data, algo, seeds + (f" ({row['diverged']} diverged)" if row["diverged"] else "")]
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
    mean regret over seeds. Runs whose training diverged are not candidates (a flagged run is
    not deployed), even where their last good checkpoint was evaluated.
    Selecting by the learner's own Q shows why OPE is needed."""
    lines = ["| dataset | seeds | best by true return | " + " | ".join(f"{title}: pick (return, regret)"
                                                                   for _, title in SELECTORS) + " |",
             "|" + "---|" * (3 + len(SELECTORS))]
    by_data: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for _, m in runs:
        if _value(m, "true_return") is not None and m.get("status") != "diverged":
            by_data[m["data"]][m["seed"]].append(m)
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


def _series(history: dict[str, Any], key: str, length: int) -> np.ndarray:
    """``history[key]`` as floats (None → NaN) of ``length`` points; ValueError saying why not."""
    values = history.get(key)
    if not isinstance(values, list):
        raise ValueError(f"eval_history.json has no list {key!r}")
    if len(values) != length:
        raise ValueError(f"eval_history.json: {key!r} has {len(values)} points, 'step' has {length}")
    try:
        return np.array([math.nan if v is None else v for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"eval_history.json: {key!r} holds values that are not numbers") from None


def _histories(runs: list[tuple[Path, dict[str, Any]]],
               notes: list[tuple[Path, str]]) -> list[tuple[dict[str, Any], dict[str, np.ndarray]]]:
    """Each run's evaluation curves (``step``, ``eval/return`` and, when present and as long,
    the Q-vs-truth pair); a run whose history cannot be read is noted and plotted without it."""
    out = []
    for folder, metrics in runs:
        path = folder / "eval_history.json"
        if not path.exists():
            continue
        try:
            content = _read_json(path)
            history = (content.get("eval") if isinstance(content, dict) else None) or {}
            if not isinstance(history, dict):
                raise ValueError("eval_history.json: 'eval' is not an object")
            if not history.get("step"):
                continue
            steps = _series(history, "step", len(history["step"]))
            curves = {"step": steps, "eval/return": _series(history, "eval/return", len(steps))}
        except ValueError as error:
            notes.append((folder, f"no learning curve: {error}"))
            continue
        try:
            for key in ("eval/q_estimate", "eval/discounted_return"):
                curves[key] = _series(history, key, len(steps))
        except ValueError as error:
            notes.append((folder, f"no Q-vs-truth curve: {error}"))
            curves.pop("eval/q_estimate", None)
        out.append((metrics, curves))
    return out


def plot(runs: list[tuple[Path, dict[str, Any]]], out_dir: Path,
         notes: list[tuple[Path, str]] | None = None) -> list[Path]:
    """The figures of the module docstring; runs whose history cannot be read are added to ``notes``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    histories = _histories(runs, notes if notes is not None else [])
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
            behaviour = [v for m, _ in histories if m["data"] == data
                         and (v := _value(m, "behaviour_return")) is not None]
            # median over runs: each run values the logging policy (A/B test, or logged mean for online buffers)
            if behaviour:
                ax.axhline(float(np.median(behaviour)), color="black", linestyle="--")
            ax.set(title=data, xlabel="update", ylabel="true return (simulator)")
        finish(fig, axes, "learning_curves.png")

        fig, axes = panels("Q estimate vs true discounted return during training (overestimation above the line)")
        for ax, data in zip(axes, datasets):
            top = 1.0
            for metrics, history in histories:
                if metrics["data"] != data or "eval/q_estimate" not in history:
                    continue
                q, v = history["eval/q_estimate"], history["eval/discounted_return"]
                ax.plot(v, q, marker="o", markersize=2.5, color=colour[metrics["algo"]], alpha=0.8)
                finite = np.abs(np.concatenate([q, v]))
                finite = finite[np.isfinite(finite)]
                top = max(top, float(finite.max()) if finite.size else top)
            ax.plot([0, top], [0, top], color="black", linestyle="--")
            ax.set(title=data, xlabel="true discounted return", ylabel="Q estimate on initial states")
        finish(fig, axes, "q_vs_true.png")

    estimators = [(key, title) for key, title in COLUMNS if key.startswith("ope_")]
    points = [(m, key) for _, m in runs for key, _ in estimators
              if _value(m, key) is not None and _value(m, "true_value") is not None]
    if points:
        fig, ax = plt.subplots(figsize=(5.5, 5))
        # the frame spans the true values (twice their range): an estimate far outside it (a
        # diverged critic's 10^5) is drawn on the frame's edge as a triangle and counted, so the
        # rest stay readable
        truths = [_value(m, "true_value") for m, _ in points]
        span = max(truths) - min(truths) or max(abs(max(truths)), 1.0)
        low, high = min(truths) - span, max(truths) + span
        outside = []
        for key, title in estimators:
            xs = [_value(m, "true_value") for m, k in points if k == key]
            ys = [_value(m, key) for m, k in points if k == key]
            if not xs:
                continue
            inside = [(x, y) for x, y in zip(xs, ys) if low <= y <= high]
            beyond = [(x, y) for x, y in zip(xs, ys) if not low <= y <= high]
            colour = ax.scatter(*zip(*inside) if inside else ([], []), label=title, s=18).get_facecolor()
            for x, y in beyond:
                outside.append(y)
                ax.scatter([x], [high if y > high else low], marker="^" if y > high else "v", s=40, color=colour)
        ax.plot([low, high], [low, high], color="black", linestyle="--", label="estimate = truth")
        ax.set(xlabel="true value (simulated A/B test)", ylabel="OPE estimate", title="OPE vs truth",
               xlim=(low, high), ylim=(low - 0.02 * (high - low), high + 0.02 * (high - low)))
        if outside:
            ax.set_title(f"OPE vs truth\n{len(outside)} estimates outside the frame (▲ above, ▼ below: "
                         f"{min(outside):.3g} to {max(outside):.3g})", fontsize=9)
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
            table[policy][metric] = {"mean": float(values.mean()), "std": seed_std(values)}
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
    seed-to-seed spread (the larger of their stds, ddof=1; 0 for one seed) and whether
    the difference exceeds it (``beats``)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    difference, spread = float(a.mean() - b.mean()), max(seed_std(a), seed_std(b))
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


def _notes_section(scan: RunScan, root: Path) -> str:
    def name(folder: Path) -> str:
        try:
            return str(folder.relative_to(root)) if folder != root else "."
        except ValueError:
            return str(folder)

    lines = [f"- `{name(run)}`: incomplete (no metrics.json: killed or still running), counted in its row "
             f"as {data} / {algo}" for run, (data, algo) in scan.incomplete]
    lines += [f"- `{name(run)}`: {reason}" for run, reason in scan.notes]
    return "Runs left out or read in part:\n\n" + "\n".join(lines) if lines else ""


def report(folders: list[Path]) -> tuple[str, list[Path]]:
    scan = scan_runs(folders)
    out_dir = folders[0]
    if not scan.runs:
        problems = _notes_section(scan, out_dir)
        raise SystemExit(f"marl-rec-report: no metrics.json with 'algo' and 'data' under "
                         f"{', '.join(map(str, folders))}" + (f"\n\n{problems}" if problems else ""))
    aggregated = aggregate(scan.runs, scan.incomplete)
    table = (markdown(aggregated) + "\n\nPolicy selection, per seed: the learner each estimate would ship, its true "
             "return and its regret against the best true return among the runs that have the estimate:\n\n"
             + selection(scan.runs))
    figures = plot(scan.runs, out_dir, scan.notes)  # first: it notes the runs whose curves it cannot read
    notes = _notes_section(scan, out_dir)
    if notes:
        table += "\n\n" + notes
    write_text(out_dir / "report.md", table + "\n")
    return table, [out_dir / "report.md"] + figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="marl-rec-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="run or multirun sweep folders")
    args = parser.parse_args(argv)
    table, written = report(args.folders)
    print(table)
    print("\nwrote: " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    main()
