"""Seconds of one full evaluation at each budget of the zpenalty study, and its share of a quick trial.

Run by hand, never from the tests:

    python benchmarks/evaluation.py                          # smoke, quick and full, 3 timed evaluations each
    python benchmarks/evaluation.py --device cuda --budgets quick full

Each budget's config is read from ``studies/zpenalty.toml`` with the suite's own loader
(``suite.studyfile.load_spec``, ``trial_values``, ``config.from_flat``), so the figures follow the
file. The networks are an untrained aegan of the budget's sizes on mnist5k, built by
``suite.loop.Loop`` as a run builds them. ``Evaluator.prepare`` runs once (it trains the domain
classifier when the suite's cache folder, ``$AEGAN_SUITE_CACHE``, has none, and computes the real
reference features), then ``Evaluator.evaluate`` is timed ``--repeats`` times and the median is
reported. The time covers the metrics alone: the trainer's sample grids and their MLflow upload
are not included.

A quick trial's seconds are estimated as its training images (epochs x whole batches of its
training split) at the quick aegan case's suite images per second from ``benchmarks/throughput.py``,
plus its number of evaluations times the median evaluation. The share reported is one
evaluation over those seconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import benchutil
from suite import config, data, loop, metrics, studyplan
from suite.metrics import domain

log = logging.getLogger(__name__)

BUDGETS = ("smoke", "quick", "full")


def budget_config(budget: str, overrides: dict[str, Any], device: torch.device) -> config.RunConfig:
    """Return the validated run config of a zpenalty trial at ``budget`` on ``device``, objective aegan."""
    values = benchutil.study_budget_values(budget, {**overrides, "method.objective": "aegan"})
    values["train.device"] = device.type
    return config.from_flat(values)


def time_evaluations(evaluator: metrics.Evaluator, nets, repeats: int, device: torch.device) -> list[float]:
    """Return the seconds of ``repeats`` calls of ``evaluator.evaluate`` on ``nets``."""
    seconds = []
    for repeat in range(repeats):
        benchutil.synchronize(device)
        started = time.perf_counter()
        evaluator.evaluate(nets, epoch=repeat + 1, final=False)
        benchutil.synchronize(device)
        seconds.append(time.perf_counter() - started)
    return seconds


def measure(budget: str, overrides: dict[str, Any], repeats: int, device: torch.device) -> dict[str, Any]:
    """Prepare one evaluator for ``budget`` and time its evaluations; return the figures."""
    cfg = budget_config(budget, overrides, device)
    e = cfg.eval
    dataset = data.load(cfg.data)
    result: dict[str, Any] = {
        "budget": budget, "device": str(device), "ngf": cfg.model.ngf, "nz": cfg.model.nz,
        "image_size": cfg.data.image_size, "train_images": len(dataset.train), "holdout_images": len(dataset.holdout),
        "num_samples": e.num_samples, "radius_samples": e.radius_samples, "radii": len(e.radii),
        "generated_per_evaluation": e.num_samples + len(e.radii) * e.radius_samples,
        "eval_batch_size": e.batch_size,
    }
    benchutil.reset_peak_memory(device)
    if domain.is_labelled(dataset):
        trained, _ = domain.obtain(dataset, e.classifier_epochs, device)
        result["classifier_from_cache"] = trained.from_cache
        result["classifier_train_seconds"] = trained.seconds
        if not trained.from_cache:
            log.info("%s: the domain classifier was not cached and was trained now in %.1f s (once per data set "
                     "and classifier_epochs)", budget, trained.seconds)
    evaluator = metrics.Evaluator(cfg, dataset, device)
    started = time.perf_counter()
    evaluator.prepare()
    result["prepare_seconds"] = time.perf_counter() - started

    state = loop.Loop(cfg, dataset, device)
    seconds = time_evaluations(evaluator, state.nets, repeats, device)
    result["evaluation_seconds"] = seconds
    result["evaluation_median_seconds"] = statistics.median(seconds)
    result["peak_memory_mib"] = benchutil.peak_memory_mib(device)
    cost = studyplan.run_cost(cfg)
    result.update({"epochs": cost.epochs, "evaluations": cost.evaluations, "training_images": cost.examples,
                   "estimated_seconds_studyplan": cost.cpu_seconds})
    return result


def quick_rate(path: Path, explicit: float | None, device: torch.device) -> tuple[float | None, str]:
    """Return the quick aegan case's suite images per second and where it came from (None: unknown)."""
    if explicit is not None:
        return explicit, "--quick-images-per-second"
    if not path.is_file():
        log.warning("no throughput results at %s: the share of a quick trial is not computed; run "
                    "benchmarks/throughput.py first or pass --quick-images-per-second", path)
        return None, "missing"
    stored = json.loads(path.read_text())
    for row in stored.get("results", []):
        if row.get("group") == "quick" and row.get("objective") == "aegan":
            if row.get("device") != str(device):
                log.warning("the quick throughput in %s was measured on %s, this evaluation on %s: the share mixes "
                            "two devices", path, row.get("device"), device)
            return row["suite_images_per_second"], f"{path} ({row.get('device')})"
    log.warning("%s has no quick aegan case: the share of a quick trial is not computed", path)
    return None, "missing"


def quick_share(quick: dict[str, Any], rate: float | None, source: str) -> dict[str, Any] | None:
    """Return the estimated seconds of a quick trial and one evaluation's share of them."""
    if rate is None:
        return None
    train_seconds = quick["training_images"] / rate
    evaluation_seconds = quick["evaluations"] * quick["evaluation_median_seconds"]
    trial_seconds = train_seconds + evaluation_seconds
    return {
        "images_per_second": rate, "rate_source": source, "epochs": quick["epochs"],
        "training_images": quick["training_images"], "evaluations": quick["evaluations"],
        "train_seconds": train_seconds, "evaluation_seconds": evaluation_seconds, "trial_seconds": trial_seconds,
        "one_evaluation_share": quick["evaluation_median_seconds"] / trial_seconds,
        "all_evaluations_share": evaluation_seconds / trial_seconds,
    }


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Return ``KEY=VALUE`` items as a dict, values parsed as the suite parses ``--set``."""
    return dict(config.parse_override(item) for item in items)


def main() -> int:
    """Run ``python benchmarks/evaluation.py``; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", nargs="+", choices=BUDGETS, default=list(BUDGETS),
                        help="budgets of studies/zpenalty.toml to measure (default: all three)")
    parser.add_argument("--repeats", type=int, default=3, help="timed evaluations per budget; the median is reported")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key in every budget, for tiny checks (e.g. eval.radius_samples=100)")
    parser.add_argument("--throughput", type=Path, default=benchutil.RESULTS_DIR / "throughput.json",
                        help="JSON of benchmarks/throughput.py with the quick aegan case "
                        "(default: benchmarks/results/throughput.json)")
    parser.add_argument("--quick-images-per-second", type=float, metavar="RATE",
                        help="training images per second of a quick aegan trial, instead of the throughput JSON")
    parser.add_argument("--json", type=Path, default=benchutil.RESULTS_DIR / "evaluation.json",
                        help="write the results to this JSON file (default: benchmarks/results/evaluation.json)")
    benchutil.add_device_options(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.repeats < 1:
        parser.error(f"invalid value for --repeats: {args.repeats}; expected an integer >= 1")
    try:
        device = benchutil.setup_device(args.device, args.threads)
        overrides = parse_overrides(args.overrides)
    except (ValueError, config.ConfigError) as error:
        parser.error(str(error))

    results = []
    for budget in args.budgets:
        log.info("measuring the %s budget's evaluation on %s", budget, device)
        results.append(measure(budget, overrides, args.repeats, device))
        benchutil.synchronize(device)
    by_budget = {r["budget"]: r for r in results}
    share = None
    if "quick" in by_budget:
        rate, source = quick_rate(args.throughput, args.quick_images_per_second, device)
        share = quick_share(by_budget["quick"], rate, source)

    memory = benchutil.memory_kind(device)
    for r in results:
        print(f"{r['budget']:5} {r['generated_per_evaluation']:5} samples  prepare {r['prepare_seconds']:6.1f} s  "
              f"evaluation median {r['evaluation_median_seconds']:6.2f} s of {len(r['evaluation_seconds'])}  "
              f"peak {r['peak_memory_mib']:.0f} MiB")
    if share is not None:
        print(f"quick trial: {share['train_seconds']:.0f} s training + {share['evaluations']} x "
              f"{by_budget['quick']['evaluation_median_seconds']:.1f} s evaluation = {share['trial_seconds']:.0f} s; "
              f"one evaluation is {100 * share['one_evaluation_share']:.1f}% of it")
    print(f"peak memory: {memory}")
    summary = {"script": "evaluation", "environment": benchutil.environment(device), "repeats": args.repeats,
               "overrides": overrides, "memory": memory, "results": results, "quick_trial": share}
    benchutil.write_json(args.json, summary)
    log.info("results written to %s", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
