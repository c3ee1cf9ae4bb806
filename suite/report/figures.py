"""The report's plots: what each one shows, built from the runs and handed to ``plots``.

Each builder returns a ``Figure`` (file and caption) or a note saying why it was left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from suite.metrics import keys
from suite.report import plots, rules, stats, text
from suite.report.claims import EXTRACTOR_ORDER
from suite.report.runs import COMPLETE, Configuration
from suite.report.study_info import StudyInfo, trial_values


@dataclass
class Figure:
    """One PNG of the report, with its file name inside the report's folder."""

    title: str
    file: str
    caption: str


def _numeric(values: list[str]) -> list[float] | None:
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        return None


def largest_count(frame: pd.DataFrame, key: str) -> float | None:
    """Return the largest sample count that runs in ``frame`` logged ``key`` with (None: none logged)."""
    column = f"metrics.{key}/n"
    if column not in frame:
        return None
    counts = pd.to_numeric(frame[column], errors="coerce").dropna()
    return float(counts.max()) if len(counts) else None


def values_at_count(frame: pd.DataFrame, key: str, count: float | None) -> list[float]:
    """Return metric ``key`` per run, NaN where missing or logged with another sample count."""
    if f"metrics.{key}" not in frame:
        return [math.nan] * len(frame)
    values = pd.to_numeric(frame[f"metrics.{key}"], errors="coerce")
    if count is not None:
        values = values.where(pd.to_numeric(frame[f"metrics.{key}/n"], errors="coerce") == count)
    return [float(v) for v in values]


def objective_vs_params(frame: pd.DataFrame, info: StudyInfo, params: list[str], folder: Path) -> Figure | str:
    """Plot each objective against each searched parameter over the complete search trials."""
    search = frame[(frame["phase"] == "search") & (frame["state"] == COMPLETE)]
    if not info.objectives:
        return "objective against parameters: the objectives are unknown without the study file"
    if search.empty or not params:
        return "objective against parameters: no complete search trials with searched parameters"
    items, other_counts = [], 0
    for key, direction in info.objectives:
        count = largest_count(search, key)
        y = values_at_count(search, key, count)
        logged = pd.to_numeric(search.get(f"metrics.{key}", pd.Series(dtype=float)), errors="coerce").notna()
        other_counts = max(other_counts, int(logged.sum()) - sum(math.isfinite(v) for v in y))
        for param in params:
            raw = [str(v) for v in search.get(f"params.{param}", pd.Series([""] * len(search)))]
            x = _numeric(raw)
            panel = plots.Panel(param, param, f"{key} ({text.count(count)}), {direction}")
            if x is None:
                panel.categories = sorted(set(raw))
                panel.points["trials"] = (raw, y)
            else:
                panel.points["trials"] = (x, y)
                finite = [v for v in x if math.isfinite(v)]
                wide = bool(finite) and min(finite) > 0 and max(finite) / min(finite) >= 100
                panel.log_x = param in info.log_params or (not info.spec and wide)
            items.append(panel)
    plots.panels(items, folder / "objective_vs_params.png")
    log_note = "log axes where the search was logarithmic" if info.spec else \
        "log axes where a parameter spans two decades or more (the study file was not read)"
    caption = f"One point per complete search trial; {log_note}. Pruned and failed trials are not drawn."
    if other_counts:
        caption += (f" {text.plural(other_counts, 'trial')} that logged the objective at a smaller sample count "
                    "are not drawn (the y axis names the count).")
    return Figure("Objective against each searched parameter", "objective_vs_params.png", caption)


def resolve_feature_key(name: str, configs: list[Configuration]) -> str | None:
    """Return ``<name>_<extractor>`` for the first extractor that any configuration logged."""
    for extractor in EXTRACTOR_ORDER:
        key = f"{name}_{extractor}"
        if any(config.counts(key) for config in configs):
            return key
    return None


def training_curves(configs: list[Configuration], read_history: rules.HistoryReader, folder: Path) -> Figure | str:
    """Plot FID and modes against the epoch: one thin line per seed, the mean and its interval."""
    fid = resolve_feature_key(keys.FID, configs)
    items = []
    for key in (fid, keys.MODES):
        if key is None or not any(config.counts(key) for config in configs):
            continue
        counts = sorted({c for config in configs for c in config.counts(key) if c is not None}, reverse=True)
        count = counts[0] if counts else None
        panel = plots.Panel(f"{key} during training", "epoch", f"{key} ({text.count(count)})", floor=metric_floor(key))
        for config in configs:
            histories = [rules.history_at_count(read_history, run_id, key, count) for run_id in config.run_ids]
            if not any(histories):
                continue
            panel.lines[config.label] = [([e for e, _ in h], [v for _, v in h]) for h in histories if h]
            panel.bands[config.label] = _band_by_step(histories)
        items.append(panel)
    if not items:
        return "training curves: no FID or modes history was logged"
    plots.panels(items, folder / "training_curves.png")
    return Figure("Training curves", "training_curves.png",
                  "Metric history from MLflow at each evaluation of the final sample count; thin lines are "
                  "single seeds, the thick line their mean with its 95% interval.")


def _band_by_step(histories: list[rules.History]) -> plots.Band:
    steps = sorted({step for history in histories for step, _ in history})
    by_run = [dict(history) for history in histories]
    summaries = [stats.summarize([run.get(step, math.nan) for run in by_run]) for step in steps]
    return plots.Band([float(s) for s in steps], [s.mean for s in summaries],
                      [s.low for s in summaries], [s.high for s in summaries])


# Metrics that cannot go below 0 (KID's unbiased estimate can, so it is not listed).
NONNEGATIVE = (keys.FID, keys.IS_MEAN, keys.PRECISION, keys.RECALL, keys.F_SCORE, keys.MODES, keys.MODES_KL,
               keys.HQ_SHARE, keys.SHARPNESS_REL, keys.SAMPLE_VAR_REL, keys.FEATURE_VAR_REL, "code_norm_rel",
               keys.RECON_ERROR)


def metric_floor(key: str) -> float | None:
    """Return 0.0 for a metric that cannot be negative (by its key's last part), else None."""
    last = key.rsplit("/", 1)[-1]
    return 0.0 if any(last == name or last.startswith(name + "_") for name in NONNEGATIVE) else None


def radius_sweep(configs: list[Configuration], folder: Path) -> Figure | str:
    """Plot FID and sharpness of decoded codes against the radius r (1 = the prior's typical norm)."""
    items = []
    for name in (resolve_radius_fid(configs), keys.SHARPNESS_REL):
        if name is None:
            continue
        panel = plots.Panel(f"radius sweep: {name}", "r (code norm / sqrt(nz))", name, floor=metric_floor(name))
        counts = set()
        for config in configs:
            series = rules.radius_values(config, name)
            if not series:
                continue
            summaries = [stats.summarize(values) for values, _ in series.values()]
            counts |= {count for _, count in series.values()}
            panel.bands[config.label] = plots.Band(list(series), [s.mean for s in summaries],
                                                   [s.low for s in summaries], [s.high for s in summaries])
        if panel.bands:
            panel.ylabel += f" ({', '.join(text.count(c) for c in sorted(counts, key=lambda c: c or 0))})"
            items.append(panel)
    if not items:
        return "radius sweep: no radius/<r>/... metrics were logged"
    plots.panels(items, folder / "radius_sweep.png")
    return Figure("Radius sweep", "radius_sweep.png",
                  "Codes of norm r * sqrt(nz) decoded by G; mean over seeds with its 95% interval.")


def resolve_radius_fid(configs: list[Configuration]) -> str | None:
    """Return the FID key of the radius sweep (``fid_inception`` or ``fid_domain``) that runs logged."""
    for extractor in EXTRACTOR_ORDER:
        key = f"{keys.FID}_{extractor}"
        if any(rules.radius_values(config, key) for config in configs):
            return key
    return None


def d_accuracy(configs: list[Configuration], folder: Path) -> Figure | str:
    """Plot D's accuracy on held-out real images, prior samples and reconstructions."""
    series = {}
    for key, name in ((keys.D_ACC_REAL, "real (held out)"), (keys.D_ACC_FAKE, "fake (prior samples)"),
                      (keys.D_ACC_REC, "reconstructions")):
        summaries = []
        for config in configs:
            counts = [c for c in config.counts(key) if c is not None]
            summaries.append(stats.summarize(config.values(key, max(counts) if counts else None)))
        if any(s.n for s in summaries):
            series[name] = plots.Band([], [s.mean for s in summaries], [s.low for s in summaries],
                                      [s.high for s in summaries])
    if not series:
        return "D's accuracy: no d_acc_*_holdout or d_acc_fake_eval metrics were logged"
    plots.bars([c.label for c in configs], series, "accuracy", "D's accuracy at the final evaluation",
               folder / "d_accuracy.png")
    return Figure("D's accuracy", "d_accuracy.png",
                  "Mean over seeds with its 95% interval; a configuration without a value has no bar "
                  "(dcgan has no reconstructions).")


def optuna_history(info: StudyInfo, folder: Path) -> Figure | str:
    """Plot each objective of the complete search trials by trial number, with the best so far."""
    trials = info.search_trials()
    if trials is None or not info.objectives:
        return "optimisation history: no Optuna trials were read"
    complete = trials[trials["state"] == "COMPLETE"]
    if complete.empty:
        return "optimisation history: no complete search trial in the Optuna study"
    numbers = [float(n) for n in complete["number"]]
    items = []
    for index, (key, direction) in enumerate(info.objectives):
        values = trial_values(complete, index)
        best, running = [], math.nan
        for value in values:
            if math.isfinite(value) and (not math.isfinite(running) or
                                         (value < running if direction == "minimize" else value > running)):
                running = value
            best.append(running)
        panel = plots.Panel(f"optimisation history: {key}", "trial number", f"{key} ({direction})")
        panel.points["complete trials"] = (numbers, values)
        nan = [math.nan] * len(numbers)
        panel.bands["best so far"] = plots.Band(numbers, best, nan, nan)
        items.append(panel)
    plots.panels(items, folder / "optuna_history.png")
    return Figure("Optimisation history (Optuna)", "optuna_history.png",
                  f"{len(complete)} complete search trials of {len(trials)} from the Optuna storage.")


def optuna_importances(info: StudyInfo, folder: Path) -> Figure | str:
    """Plot Optuna's parameter importances for the first objective."""
    if info.importances is None:
        return "parameter importances: no Optuna trials were read"
    if not info.importances:
        return ("parameter importances: Optuna computes none with fewer than two complete search trials "
                "or without a parameter that took two values")
    plots.horizontal_bars(info.importances, "importance", "parameter importances (first objective)",
                          folder / "optuna_importances.png")
    objective = info.objectives[0][0] if info.objectives else "the first objective"
    return Figure("Parameter importances (Optuna)", "optuna_importances.png",
                  f"Optuna's default importance evaluator on {objective}, complete search trials only.")


def pareto_front(info: StudyInfo, folder: Path) -> Figure | str | None:
    """Plot the first two objectives of the complete search trials and mark the Pareto front."""
    if len(info.objectives) < 2:
        return None
    trials = info.search_trials()
    if trials is None or info.pareto is None:
        return "Pareto front: no Optuna trials were read"
    complete = trials[trials["state"] == "COMPLETE"]
    x, y = trial_values(complete, 0), trial_values(complete, 1)
    front = [n in set(info.pareto) for n in complete["number"]]
    (kx, dx), (ky, dy) = info.objectives[:2]
    panel = plots.Panel("Pareto front", f"{kx} ({dx})", f"{ky} ({dy})")
    panel.points["dominated trials"] = ([a for a, f in zip(x, front) if not f], [b for b, f in zip(y, front) if not f])
    panel.points["Pareto front"] = ([a for a, f in zip(x, front) if f], [b for b, f in zip(y, front) if f])
    plots.panels([panel], folder / "pareto_front.png")
    return Figure("Pareto front", "pareto_front.png",
                  f"{sum(front)} of {len(complete)} complete search trials are on the front (Optuna).")
