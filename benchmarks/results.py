"""Write benchmarks/RESULTS.md from the JSON files of throughput.py, evaluation.py and study_cost.py.

Run by hand after the measurements:

    python benchmarks/results.py                                   # benchmarks/results/*.json -> benchmarks/RESULTS.md
    python benchmarks/results.py --notes notes.json                # causes of missed targets, by target id

A missing JSON file leaves its section and its targets marked "not measured". A missed target
gets a cause: for (b) the FLOP ratio when it alone exceeds the target, else the text that
``--notes`` gives for that target id (``a``, ``b``, ``c``, ``d``), else ``cause: to be written``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SCRIPTS = ("throughput", "evaluation", "study_cost")
SUITE_OVER_BARE_MIN = 0.95
AEGAN_OVER_DCGAN_MAX = 1.45
EVALUATION_SHARE_MAX = 0.15
PRUNING_SAVING_MIN = 0.30
TODO_CAUSE = "cause: to be written"


def number(value: Any, digits: int = 1) -> str:
    """Return ``value`` with ``digits`` decimals, or an en dash for a missing value."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    """Return a Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


def environment_section(found: dict[str, dict]) -> list[str]:
    """Return the machine and library table, one column per script that has results."""
    if not found:
        return ["## Machine", "", "No results found.", ""]
    names = list(found)
    envs = [found[name]["environment"] for name in names]
    fields = [("date", "date"), ("platform", "platform"), ("cpu", "CPU"), ("cores", "cores"),
              ("threads", "torch threads"), ("device", "device"), ("gpu", "GPU")]
    rows = [[label] + [number(env.get(key)) for env in envs] for key, label in fields]
    rows.append(["load average (1 min) at the end"] + [number((env.get("load_average") or [None])[0], 2)
                                                      for env in envs])
    packages = list(dict.fromkeys(key for env in envs for key in env.get("versions", {})))
    rows += [[package] + [env.get("versions", {}).get(package, "–") for env in envs] for package in packages]
    return ["## Machine and libraries", ""] + table(["", *names], rows)


def throughput_section(result: dict | None) -> list[str]:
    """Return the throughput tables: one row per case, then the aegan/dcgan ratios per group."""
    lines = ["## Training throughput (`throughput.py`)", ""]
    if result is None:
        return lines + ["Not measured.", ""]
    lines += [f"{result['epochs']} timed epochs per side after one warm-up, {result['limit']} images per epoch "
              f"(0: all) of mnist5k; median images per second. Peak memory: {result['memory']}.", ""]
    rows = []
    for r in result["results"]:
        if "suite_peak_mib" in r:
            memory = (f"bare {number(r['bare_peak_mib'], 0)} (+{number(r['bare_peak_above_start_mib'], 0)}), "
                      f"suite {number(r['suite_peak_mib'], 0)} (+{number(r['suite_peak_above_start_mib'], 0)})")
        else:
            memory = number(r.get("process_peak_rss_mib"), 0)
        rows.append([r["group"], r["objective"], f"{r['image_size']} px x{r['channels']}", r["width"], r["batch"],
                     number(r["bare_images_per_second"]), number(r["suite_images_per_second"]), number(r["ratio"], 3),
                     number(r["flops_per_step"] / 1e9, 3), memory])
    lines += table(["case", "objective", "images", "width", "batch", "bare img/s", "suite img/s", "suite/bare",
                    "GFLOP/step", "peak memory MiB"], rows)
    lines += ["aegan over dcgan per step (same batch): time from the median images per second; FLOPs counted by "
              "`torch.utils.flop_counter.FlopCounterMode` (matrix multiplications and convolutions, forward and "
              "backward) over one `Trainer.step`.", ""]
    rows = [[row["group"], number(row["suite_time_ratio"], 3), number(row["bare_time_ratio"], 3),
             number(row["flop_ratio"], 3)] for row in result["ratios"]]
    return lines + table(["case", "time ratio, suite", "time ratio, bare", "FLOP ratio"], rows)


def evaluation_section(result: dict | None) -> list[str]:
    """Return the evaluation table and the quick-trial estimate."""
    lines = ["## Evaluation (`evaluation.py`)", ""]
    if result is None:
        return lines + ["Not measured.", ""]
    overrides = ", ".join(f"{k}={v}" for k, v in result.get("overrides", {}).items()) or "none"
    lines += [f"Untrained aegan, budgets of studies/zpenalty.toml (overrides: {overrides}); "
              f"{result['repeats']} timed calls of `Evaluator.evaluate` after one `prepare`. "
              f"Peak memory: {result['memory']}.", ""]
    rows = [[r["budget"], r["ngf"], r["generated_per_evaluation"], number(r.get("classifier_from_cache")),
             number(r["prepare_seconds"], 1), ", ".join(number(s, 2) for s in r["evaluation_seconds"]),
             number(r["evaluation_median_seconds"], 2), r["evaluations"], number(r["peak_memory_mib"], 0)]
            for r in result["results"]]
    lines += table(["budget", "width", "samples per evaluation", "classifier cached", "prepare s", "evaluations s",
                    "median s", "evaluations per trial", "peak memory MiB"], rows)
    share = result.get("quick_trial")
    if share is None:
        return lines + ["Quick trial: not estimated (no quick budget or no quick throughput).", ""]
    lines += [f"Quick trial, estimated: {share['epochs']} epochs, {share['training_images']:,} training images in all, "
              f"at {number(share['images_per_second'])} img/s ({share['rate_source']}) = "
              f"{number(share['train_seconds'])} s, plus {share['evaluations']} evaluations = "
              f"{number(share['evaluation_seconds'])} s: {number(share['trial_seconds'])} s. One evaluation is "
              f"{number(100 * share['one_evaluation_share'])}% of it, all evaluations together "
              f"{number(100 * share['all_evaluations_share'])}%.", ""]
    return lines


def study_section(result: dict | None) -> list[str]:
    """Return the study-cost table and the comparison."""
    lines = ["## Study cost with and without pruning (`study_cost.py`)", ""]
    if result is None:
        return lines + ["Not measured.", ""]
    rows = []
    for s in result["studies"]:
        best = s["confirmation"].get("best", {})
        interval = f" [{number(best['low'], 2)}, {number(best['high'], 2)}]" if best.get("low") is not None else ""
        others = "; ".join(f"{variant} {number(v['mean'], 2)}" for variant, v in s["confirmation"].items()
                           if variant != "best")
        rows.append([s["name"], s["pruner"]["pruner"], s["budget"], s["search_trials"], s["pruned_trials"],
                     s["search_epochs"], s["confirmation_epochs"], number(s["wall_seconds"], 0),
                     number(s.get("process_seconds"), 0), number(s["train_seconds"], 0),
                     number(s["best_search_value"], 2), f"{number(best.get('mean'), 2)}{interval} (n={best.get('n', 0)})",
                     others or "–"])
    lines += table(["study", "pruner", "budget", "search trials", "pruned", "search epochs", "confirmation epochs",
                    "wall s", "command s", "training s", "best search FID", "best variant FID, 95% t-interval",
                    "other variants"], rows)
    c = result.get("comparison")
    if c:
        d = c["best_confirmation_difference"]
        difference = (f"{number(d['difference'], 2)} [{number(d['low'], 2)}, {number(d['high'], 2)}] (Welch 95%)"
                      if d else "not computed (fewer than 2 seeds)")
        max_saving = result["studies"][0].get("max_saving")
        lines += [f"- search epochs saved by pruning: {c['search_epochs_saved']} "
                  f"({number(100 * (c['search_epochs_saved_share'] or 0))}% of the search, "
                  f"{number(100 * (c['total_epochs_saved_share'] or 0))}% of the whole study)"]
        if max_saving and max_saving["first_prunable_epoch"] is None:
            lines += ["- maximum saving the pruner's settings allow: none, because no evaluation before a trial's last epoch "
                      "comes at or after the warm-up"]
        elif max_saving:
            lines += [f"- maximum saving the pruner's settings allow: {max_saving['epochs']} epochs "
                      f"({number(100 * (max_saving['share_of_search'] or 0))}% of the search), each prunable trial "
                      f"stopped at epoch {max_saving['first_prunable_epoch']}"]
        lines += [f"- best variant's confirmation FID, with pruning minus without: {difference}", ""]
    return lines


def targets(found: dict[str, dict]) -> list[dict[str, Any]]:
    """Return the four targets with their measured value and result (met, missed, not measured)."""
    rows = []
    throughput, evaluation, study = (found.get(name) for name in SCRIPTS)
    if throughput:
        worst = min(throughput["results"], key=lambda r: r["ratio"])
        rows.append({"id": "a", "met": worst["ratio"] >= SUITE_OVER_BARE_MIN,
                     "value": f"lowest {worst['ratio']:.3f} ({worst['group']} {worst['objective']}); "
                     + ", ".join(f"{r['group']} {r['objective']} {r['ratio']:.3f}" for r in throughput["results"])})
        ratios = throughput["ratios"]
        met = all(r["suite_time_ratio"] <= AEGAN_OVER_DCGAN_MAX for r in ratios) if ratios else None
        floors = [r for r in ratios if r["flop_ratio"] > AEGAN_OVER_DCGAN_MAX]
        cause = ("; ".join(f"{r['group']}: aegan does {r['flop_ratio']:.2f}x dcgan's FLOPs per step" for r in floors)
                 + " (an E forward and backward and a second G forward and backward on the reconstruction batch), "
                 "so a step whose time follows its FLOPs cannot meet 1.45" if floors else None)
        rows.append({"id": "b", "met": met, "auto_cause": cause, "value": ", ".join(
            f"{r['group']} {r['suite_time_ratio']:.3f} (FLOPs {r['flop_ratio']:.3f})" for r in ratios)})
    if evaluation and evaluation.get("quick_trial"):
        share = evaluation["quick_trial"]["one_evaluation_share"]
        rows.append({"id": "c", "met": share <= EVALUATION_SHARE_MAX, "value": f"{100 * share:.1f}% of a quick trial"})
    if study and study.get("comparison"):
        c = study["comparison"]
        saved, worse = c["search_epochs_saved_share"], c["worse_beyond_noise"]
        met = None if saved is None or worse is None else saved >= PRUNING_SAVING_MIN and not worse
        undecided = "seed noise is unknown with fewer than 2 confirmation seeds per study" if worse is None else None
        rows.append({"id": "d", "met": met, "auto_cause": undecided, "value": f"{100 * (saved or 0):.0f}% of the search epochs saved; "
                     f"best FID worse beyond seed noise: {number(worse)}"})
    return rows


TARGET_TEXT = {
    "a": f"suite step >= {SUITE_OVER_BARE_MIN} x bare loop throughput",
    "b": f"aegan step <= {AEGAN_OVER_DCGAN_MAX} x dcgan step",
    "c": f"one evaluation <= {EVALUATION_SHARE_MAX:.0%} of a quick trial",
    "d": f"pruning saves >= {PRUNING_SAVING_MIN:.0%} of the search epochs, best FID not worse beyond seed noise",
}


def targets_section(found: dict[str, dict], notes: dict[str, str]) -> list[str]:
    """Return the targets table: target, measured value, met or missed, and the cause of a miss."""
    measured = {row["id"]: row for row in targets(found)}
    rows = []
    for target_id, text in TARGET_TEXT.items():
        row = measured.get(target_id)
        if row is None:
            rows.append([f"({target_id})", text, "not measured", "–", notes.get(target_id, "")])
            continue
        result = {True: "met", False: "missed", None: "not decided"}[row["met"]]
        cause = notes.get(target_id) or row.get("auto_cause") or (TODO_CAUSE if row["met"] is not True else "")
        rows.append([f"({target_id})", text, row["value"], result, cause])
    return ["## Targets", ""] + table(["id", "target", "measured", "result", "cause"], rows)


def main() -> int:
    """Run ``python benchmarks/results.py``; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=HERE / "results",
                        help="folder with throughput.json, evaluation.json and study_cost.json "
                        "(default: benchmarks/results)")
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md",
                        help="Markdown file to write (default: benchmarks/RESULTS.md)")
    parser.add_argument("--notes", type=Path, metavar="FILE",
                        help='JSON object mapping a target id ("a".."d") to the cause of its miss, in one or two '
                        "sentences")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if args.notes and not args.notes.is_file():
        parser.error(f"--notes {args.notes}: file not found")
    notes = json.loads(args.notes.read_text()) if args.notes else {}
    unknown = sorted(set(notes) - set(TARGET_TEXT))
    if unknown:
        parser.error(f"--notes {args.notes}: unknown target ids {unknown}; expected a, b, c or d")

    found = {}
    for name in SCRIPTS:
        path = args.folder / f"{name}.json"
        if path.is_file():
            found[name] = json.loads(path.read_text())
        else:
            log.warning("no %s; its section is marked not measured", path)

    written = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# Benchmark results", "",
             f"Written {written} by `python benchmarks/results.py` from the JSON files in `{args.folder.name}/`. "
             "The commands and their run times are in `benchmarks/README.md`.", ""]
    lines += environment_section(found)
    lines += throughput_section(found.get("throughput"))
    lines += evaluation_section(found.get("evaluation"))
    lines += study_section(found.get("study_cost"))
    lines += targets_section(found, notes)
    args.output.write_text("\n".join(lines).rstrip() + "\n")
    log.info("written %s", args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
