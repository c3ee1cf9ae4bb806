"""The cost of a zpenalty study with and without pruning: epochs, wall time and the best FID.

Run by hand, never from the tests:

    python benchmarks/study_cost.py --run /tmp/study-cost              # both studies, quick budget (CPU, about 25 min)
    python benchmarks/study_cost.py --read \\
        --storage sqlite:///a/optuna.db --tracking-uri sqlite:///a/mlflow.db --name zpenalty \\
        --storage sqlite:///b/optuna.db --tracking-uri sqlite:///b/mlflow.db --name zpenalty_nopruning

``--run FOLDER`` writes ``FOLDER/studies/zpenalty_nopruning.toml``, a copy of
``studies/zpenalty.toml`` with ``pruner = "none"``, then runs ``python -m suite.study`` for
``zpenalty`` and for that copy, one after the other, in FOLDER, each with its own Optuna and MLflow
stores under ``FOLDER/stores/``, and reads both. ``--read`` reads two stored studies: the first
triple of ``--storage``, ``--tracking-uri`` and ``--name`` is the study with pruning, the second the
study without.

Per study it reports search trials, pruned trials, epochs of the search phase and confirmation
epochs. A pruned trial counts the epochs up to its prune, a complete one all its epochs. It also
reports the wall time (first trial start to last trial end), the summed training seconds of the
study's runs (MLflow ``train_seconds``), the best search FID, and each confirmation variant's mean
FID with its 95% t-interval over seeds.
The comparison gives the share of search epochs that pruning saved and Welch's 95% interval of
the difference of the ``best`` variant's confirmation FID (with pruning minus without).
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.exceptions import ExperimentalWarning
from optuna.trial import FrozenTrial, TrialState
from scipy import stats

import benchutil
from suite import config, studyfile, tracking
from suite.study import _load

log = logging.getLogger(__name__)

SEARCH, CONFIRM, BEST = "search", "confirm", "best"
NOPRUNING = "zpenalty_nopruning"


def t_interval(values: list[float], level: float = 0.95) -> dict[str, Any]:
    """Return n, mean, standard deviation and the two-sided t-interval of the mean (None below 2 values)."""
    n = len(values)
    row: dict[str, Any] = {"n": n, "mean": statistics.fmean(values) if n else None, "sd": None, "low": None,
                           "high": None}
    if n >= 2:
        sd = statistics.stdev(values)
        half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
        row.update(sd=sd, low=row["mean"] - half, high=row["mean"] + half)
    return row


def welch_interval(a: list[float], b: list[float], level: float = 0.95) -> dict[str, Any] | None:
    """Return mean(a) - mean(b) with Welch's t-interval; None when either side has fewer than 2 values."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    difference = statistics.fmean(a) - statistics.fmean(b)
    if va + vb == 0:
        return {"difference": difference, "low": difference, "high": difference, "df": math.inf}
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf(0.5 + level / 2, df)) * math.sqrt(va + vb)
    return {"difference": difference, "low": difference - half, "high": difference + half, "df": df}


def planned_config(study: optuna.Study) -> config.RunConfig | None:
    """Return the config of a search trial of the stored study's file and budget; None when the file is gone."""
    path, budget = study.user_attrs.get("study_file"), study.user_attrs.get("budget")
    if path is None or budget is None:
        log.warning("study %s stores no study file or budget; epochs come from MLflow alone", study.study_name)
        return None
    try:
        spec = studyfile.load_spec(path)
        values = studyfile.trial_values(spec, spec.budget(budget), spec.data_sources[0], {}, spec.sampler_seed)
        return config.from_flat(values)
    except (studyfile.StudyError, config.ConfigError) as error:
        log.warning("study %s: its file %s (budget %s) cannot be read (%s); epochs come from MLflow alone",
                    study.study_name, path, budget, error)
        return None


def trial_row(trial: FrozenTrial, uri: str | None, planned_epochs: int | None) -> dict[str, Any]:
    """Return one trial's phase, variant, state, epochs run, value, seconds and MLflow training seconds."""
    attrs = trial.user_attrs
    row = {"number": trial.number, "phase": attrs.get("phase", SEARCH), "variant": attrs.get("variant", SEARCH),
           "seed": attrs.get("seed"), "state": trial.state.name, "value": trial.values[0] if trial.values else None,
           "start": trial.datetime_start, "end": trial.datetime_complete, "train_seconds": None}
    if trial.datetime_start and trial.datetime_complete:
        row["seconds"] = (trial.datetime_complete - trial.datetime_start).total_seconds()
    epochs = planned_epochs
    run_id = attrs.get("mlflow_run_id")
    if run_id:
        run = tracking.read_run(run_id, uri)
        row["train_seconds"] = run["metrics"].get("train_seconds")
        if "train.epochs" in run["params"]:
            epochs = int(run["params"]["train.epochs"])  # the trial's own config wins over the study file
    reported = max(trial.intermediate_values, default=0)
    row["epochs"] = epochs if trial.state == TrialState.COMPLETE else reported
    row["planned_epochs"] = epochs
    return row


def max_saving(cfg: config.RunConfig | None, spec_pruner: dict[str, Any], search_trials: int) -> dict[str, Any] | None:
    """Return the maximum search epochs the pruner's settings can save: each prunable trial stopped at its first chance.

    The median pruner prunes no trial before ``pruner_startup_trials`` trials completed and none
    before epoch ``pruner_warmup_epochs``; a trial reports only at evaluation epochs before its last.
    """
    if cfg is None or spec_pruner["pruner"] == "none":
        return None
    epochs, every = cfg.train.epochs, cfg.train.eval_every
    reported = [e for e in range(1, epochs) if every > 0 and e % every == 0]
    prunable = [e for e in reported if e >= spec_pruner["warmup"]]
    saved = 0 if not prunable else max(0, search_trials - spec_pruner["startup"]) * (epochs - prunable[0])
    total = search_trials * epochs
    return {"first_prunable_epoch": prunable[0] if prunable else None, "epochs": saved,
            "share_of_search": saved / total if total else None}


def read_study(storage: str, uri: str | None, name: str) -> dict[str, Any]:
    """Read one stored study and return its cost and results (see the module docstring)."""
    study = _load(name, storage)
    cfg = planned_config(study)
    spec = studyfile.load_spec(study.user_attrs["study_file"]) if cfg is not None else None

    pruner = {"pruner": spec.pruner if spec else "unknown", "startup": spec.pruner_startup_trials if spec else 0,
              "warmup": spec.pruner_warmup_epochs if spec else 0}
    rows = [trial_row(t, uri, cfg.train.epochs if cfg else None) for t in study.get_trials(deepcopy=False)]
    search = [r for r in rows if r["phase"] == SEARCH]
    confirm = [r for r in rows if r["phase"] == CONFIRM]

    sign = 1.0 if study.directions[0] == optuna.study.StudyDirection.MINIMIZE else -1.0
    complete_search = [r for r in search if r["state"] == "COMPLETE"]
    best = min(complete_search, key=lambda r: (sign * r["value"], r["number"])) if complete_search else None
    starts = [r["start"] for r in rows if r["start"]]
    ends = [r["end"] for r in rows if r["end"]]

    variants = {}
    for variant in dict.fromkeys(r["variant"] for r in confirm):
        values = [r["value"] for r in confirm if r["variant"] == variant and r["state"] == "COMPLETE"]
        variants[variant] = t_interval(values)
        variants[variant]["values"] = values
    train_seconds = [r["train_seconds"] for r in rows if r["train_seconds"] is not None]

    return {
        "storage": storage, "tracking_uri": uri, "name": name, "metric": (study.user_attrs.get("objectives") or
                                                                        ["value"])[0],
        "budget": study.user_attrs.get("budget"), "pruner": pruner,
        "search_trials": len(search), "pruned_trials": sum(r["state"] == "PRUNED" for r in search),
        "failed_trials": sum(r["state"] == "FAIL" for r in rows),
        "search_epochs": sum(r["epochs"] for r in search),
        "search_epochs_without_pruning": sum(r["planned_epochs"] or 0 for r in search),
        "confirmation_runs": len(confirm), "confirmation_epochs": sum(r["epochs"] for r in confirm),
        "wall_seconds": (max(ends) - min(starts)).total_seconds() if starts and ends else None,
        "train_seconds": sum(train_seconds) if train_seconds else None,
        "best_search_value": best["value"] if best else None, "best_search_trial": best["number"] if best else None,
        "confirmation": variants,
        "max_saving": max_saving(cfg, pruner, len(search)),
        "trials": [{k: v for k, v in r.items() if k not in ("start", "end")} for r in rows],
    }


def compare(pruning: dict[str, Any], nopruning: dict[str, Any]) -> dict[str, Any]:
    """Return the epochs that pruning saved and the difference of the best variant's confirmation FID."""
    if pruning["pruner"]["pruner"] == "none" or nopruning["pruner"]["pruner"] != "none":
        log.warning("the first study (%s) should prune and the second (%s) should not; their pruners are %s and %s",
                    pruning["name"], nopruning["name"], pruning["pruner"]["pruner"], nopruning["pruner"]["pruner"])
    total_with = pruning["search_epochs"] + pruning["confirmation_epochs"]
    total_without = nopruning["search_epochs"] + nopruning["confirmation_epochs"]
    saved = nopruning["search_epochs"] - pruning["search_epochs"]
    values_with = pruning["confirmation"].get(BEST, {}).get("values", [])
    values_without = nopruning["confirmation"].get(BEST, {}).get("values", [])
    difference = welch_interval(values_with, values_without)
    return {
        "search_epochs_saved": saved,
        "search_epochs_saved_share": saved / nopruning["search_epochs"] if nopruning["search_epochs"] else None,
        "total_epochs_saved_share": (total_without - total_with) / total_without if total_without else None,
        "best_confirmation_difference": difference,
        # "Worse beyond seed noise": the whole interval of (with - without) lies on the worse side of 0.
        "worse_beyond_noise": None if difference is None else difference["low"] > 0,
    }


def write_nopruning_copy(folder: Path) -> Path:
    """Write ``FOLDER/studies/zpenalty_nopruning.toml``: the zpenalty study file with ``pruner = "none"``."""
    source = studyfile.find_study_file("zpenalty")
    text, count = re.subn(r'(?m)^pruner\s*=\s*"[^"]*"', 'pruner = "none"', source.read_text())
    if count != 1:
        raise ValueError(f"{source}: expected one 'pruner = ...' line in [search], found {count}")
    path = folder / "studies" / f"{NOPRUNING}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if studyfile.load_spec(str(path)).pruner != "none":
        raise ValueError(f"{path}: the copy still prunes")
    return path


def run_studies(folder: Path, budget: str, n_trials: int | None) -> list[tuple[str, str, str, float]]:
    """Run zpenalty and its copy without pruning in ``folder``, one after the other; return their stores and seconds.

    Raises:
        FileExistsError: ``folder`` already contains stores of an earlier run.
        RuntimeError: a study command failed.
    """
    stores = folder / "stores"
    if stores.exists():
        raise FileExistsError(f"{stores} exists: a rerun would resume those studies and time only the rest; "
                              "pass a new folder")
    folder.mkdir(parents=True, exist_ok=True)
    write_nopruning_copy(folder)
    runs = []
    for name in ("zpenalty", NOPRUNING):
        (stores / name).mkdir(parents=True)
        storage = f"sqlite:///{(stores / name / 'optuna.db').resolve()}"
        uri = f"sqlite:///{(stores / name / 'mlflow.db').resolve()}"
        command = [sys.executable, "-m", "suite.study", name, "--threads", "1", "--no-report", "--no-progress",
                   "--budget", budget, "--storage", storage, "--tracking-uri", uri]
        if n_trials is not None:
            command += ["--n-trials", str(n_trials)]
        log.info("running %s in %s", " ".join(command), folder)
        started = time.monotonic()
        completed = subprocess.run(command, cwd=folder, check=False)
        seconds = time.monotonic() - started
        if completed.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed with exit status {completed.returncode} after "
                               f"{seconds:.0f} s")
        runs.append((storage, uri, name, seconds))
    return runs


def summary_lines(studies: list[dict[str, Any]], comparison: dict[str, Any] | None) -> list[str]:
    """Return the lines printed at the end."""
    lines = []
    for s in studies:
        best = s["confirmation"].get(BEST, {})
        interval = f" [{best['low']:.2f}, {best['high']:.2f}]" if best.get("low") is not None else ""
        mean = f"{best['mean']:.2f}{interval}" if best.get("mean") is not None else "none"
        best_search = "none" if s["best_search_value"] is None else f"{s['best_search_value']:.4g}"
        lines.append(f"{s['name']} (pruner {s['pruner']['pruner']}): {s['search_trials']} search trials, "
                     f"{s['pruned_trials']} pruned, {s['search_epochs']} search + {s['confirmation_epochs']} "
                     f"confirmation epochs, wall {s['wall_seconds'] or 0:.0f} s; best search {s['metric']} "
                     f"{best_search}; best variant's confirmation mean {mean}")
    if comparison:
        share = comparison["search_epochs_saved_share"]
        lines.append(f"pruning saved {comparison['search_epochs_saved']} search epochs"
                     + (f" ({100 * share:.0f}%)" if share is not None else "")
                     + f"; worse beyond seed noise: {comparison['worse_beyond_noise']}")
    return lines


def main() -> int:
    """Run ``python benchmarks/study_cost.py``; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--read", action="store_true", help="read two stored studies given by the options below")
    mode.add_argument("--run", type=Path, metavar="FOLDER", help="run both studies in FOLDER (new), then read them")
    parser.add_argument("--storage", action="append", default=[], metavar="URL",
                        help="Optuna storage of a study (--read; first the study with pruning, then without)")
    parser.add_argument("--tracking-uri", action="append", default=[], metavar="URI",
                        help="MLflow tracking URI of the same study (--read)")
    parser.add_argument("--name", action="append", default=[], help="study name in that storage (--read)")
    parser.add_argument("--budget", default="quick", choices=studyfile.BUDGETS, help="budget of --run (default quick)")
    parser.add_argument("--n-trials", type=int, metavar="N", help="search trials of --run (default: the budget's)")
    parser.add_argument("--json", type=Path, default=benchutil.RESULTS_DIR / "study_cost.json",
                        help="write the results to this JSON file (default: benchmarks/results/study_cost.json)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", ExperimentalWarning)  # the heartbeat option of RDB storages

    process_seconds: list[float | None] = []
    if args.run:
        try:
            runs = run_studies(args.run, args.budget, args.n_trials)
        except (FileExistsError, ValueError, RuntimeError) as error:
            log.error("%s", error)
            return 1
        triples = [(storage, uri, name) for storage, uri, name, _ in runs]
        process_seconds = [seconds for *_, seconds in runs]
    else:
        if not (len(args.storage) == len(args.tracking_uri) == len(args.name)) or not args.name:
            parser.error("--read needs --storage, --tracking-uri and --name once per study, in the same order")
        triples = list(zip(args.storage, args.tracking_uri, args.name))
    studies = [read_study(*triple) for triple in triples]
    for study, seconds in zip(studies, process_seconds):
        study["process_seconds"] = seconds
    comparison = compare(studies[0], studies[1]) if len(studies) == 2 else None
    print("\n".join(summary_lines(studies, comparison)))
    environment = benchutil.environment(torch.device("cpu"))
    # The study commands of --run use one torch thread; --read cannot know what the studies used.
    environment["threads"] = 1 if args.run else None
    summary = {"script": "study_cost", "environment": environment, "mode": "run" if args.run else "read",
               "studies": studies, "comparison": comparison}
    benchutil.write_json(args.json, summary)
    log.info("results written to %s", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
