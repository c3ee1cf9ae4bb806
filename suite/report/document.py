"""The sections of the markdown report, in reading order.

Each function returns a list of lines. Links to images are relative to the report file
(``NAME/file.png`` next to ``NAME.md``).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable

import pandas as pd

from suite import tracking
from suite.metrics import keys
from suite.report import text
from suite.report.artifacts import IMAGE_KINDS, Images
from suite.report.claims import Claim, Verdict
from suite.report.figures import Figure
from suite.report.runs import COMPLETE, PHASES, STATES, StudyRuns, state_counts
from suite.report.study_info import StudyInfo

DATE_PREFIX = "Generated: "
PHASE_TITLES = {"search": "Search phase", "confirm": "Confirmation phase"}


def _distinct(frame: pd.DataFrame, column: str) -> str:
    if column not in frame:
        return "unknown"
    values = sorted({str(v) for v in frame[column].dropna() if str(v)})
    return ", ".join(values) or "unknown"


CLASSIFIER_WARNING = 0.9  # held-out accuracy of the domain classifier below which the report warns


def _accuracies(frame: pd.DataFrame) -> list[float]:
    column = f"tags.{keys.TAG_DOMAIN_ACC}"
    if column not in frame:
        return []
    return sorted({float(v) for v in frame[column].dropna() if str(v)})


def _weakest_classifier(frame: pd.DataFrame) -> float | None:
    found = _accuracies(frame)
    return found[0] if found else None


def _classifier_text(frame: pd.DataFrame) -> str:
    found = _accuracies(frame)
    if not found:
        return "none (no run recorded one)"
    return ", ".join(f"{value:.1%}" for value in found) + " held-out accuracy"


def header(runs: StudyRuns, info: StudyInfo, now: datetime.datetime | None = None) -> list[str]:
    """Return the title, the study's identity and the trial counts per phase and state."""
    frame, parents = runs.frame, runs.parents
    description = info.spec.description if info.spec else next(
        (p["tags"].get("description") for p in parents if p["tags"].get("description")), "")
    stamp = (now or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
    data = _distinct(frame, "tags.data_source")

    counts = []
    for phase in PHASES:
        per_state = state_counts(frame[frame["phase"] == phase])
        counts.append(f"{phase}: " + ", ".join(f"{per_state[s]} {s}" for s in STATES))

    rows = [
        ["study", runs.name],
        ["description", description or "(none recorded)"],
        ["data set", f"{data} (fingerprint {_distinct(frame, 'tags.data_fingerprint')})"],
        ["feature extractor", _distinct(frame, f"tags.{keys.TAG_EXTRACTOR}")],
        ["domain classifier", _classifier_text(frame)],
        ["budget", runs.budget or "(none recorded)"],
        ["device", _distinct(frame, "tags.device")],
        ["code revision", _distinct(frame, "tags.code_revision")],
        ["study invocations", f"{len(parents)} (MLflow parent runs "
                              + (", ".join(f"`{p['run_id']}`" for p in parents) or "none") + ")"],
        ["trial runs", "; ".join(counts)],
    ]
    if "tags.retry_of" in frame:
        retried = frame[frame["tags.retry_of"].notna() & (frame["tags.retry_of"] != "")]
        if len(retried):
            rows.append(["retried runs", "; ".join(
                f"`{run_id}`: trial {_int_text(number)} continued trial {retry_of} after its worker stopped"
                for run_id, number, retry_of in zip(retried["run_id"], retried["trial_number"],
                                                    retried["tags.retry_of"]))])

    lines = [f"# Study report: {runs.name}", "", f"{DATE_PREFIX}{stamp}", ""]
    lines += text.table(["", ""], rows)
    if runs.budget == "smoke":
        lines += ["", "**Smoke budget:** tiny nets, a few hundred images and very short training. This report checks that the "
                      "pipeline runs end to end; its numbers and verdicts say nothing about the method. Run the "
                      "quick or full budget for those."]
    weak = _weakest_classifier(frame)
    if weak is not None and weak < CLASSIFIER_WARNING and runs.budget != "smoke":
        lines += ["", f"**Warning:** the domain classifier behind the domain features, modes and IS reaches only "
                      f"{weak:.1%} held-out accuracy (below {CLASSIFIER_WARNING:.0%}), so those metrics say little "
                      "here. Raise eval.classifier_epochs (the default 12 reaches about 97% on mnist5k)."]
    if runs.other_budgets:
        others = ", ".join(f"{b or '(none)'} ({text.plural(n, 'trial run')})" for b, n in runs.other_budgets.items())
        lines += ["", f"This experiment also holds other budgets, not in this report: {others}. "
                      f"`python -m suite.report {runs.name} --budget BUDGET` reports one of them."]
    lines += ["", "Every number below is read from MLflow; the runs behind each table are in "
                  f"[runs.csv]({runs.name}/runs.csv)."]
    return lines + [""]


def notes(items: Iterable[str]) -> list[str]:
    """Return a bulleted list of notes, or nothing when there are none."""
    items = list(items)
    return ["**Notes**", ""] + [f"- {item}" for item in items] + [""] if items else []


def verdicts(found: list[Verdict], undefined: list[str], claims: dict[str, Claim]) -> list[str]:
    """Return the verdict lines and, below them, each covered claim's statement and rule."""
    lines = ["## Verdicts", "",
             "Decided on the confirmation runs, one value per seed, by the rules of `studies/claims.toml`: "
             "a verdict needs at least 3 seeds per side, 95% t-intervals that do not overlap and p < 0.05; "
             "anything less is inconclusive.", ""]
    if not found and not undefined:
        lines += ["The study covers no claim.", ""]
    lines += [verdict.line() for verdict in found]
    lines += [f"- **{cid}: inconclusive.** The claim is not defined in `studies/claims.toml`." for cid in undefined]
    lines += ["", "### The claims and their rules", ""]
    for verdict in found:
        claim = verdict.claim
        lines += [f"- **{claim.id} {claim.title}.** {claim.statement} *Rule:* {claim.rule}"]
    return lines + [""]


def phase_section(phase: str, table: list[str], config_table: list[str], extra: list[str]) -> list[str]:
    """Return one phase's metrics table, its configuration table and its notes."""
    lines = [f"### {PHASE_TITLES.get(phase, phase)}", ""]
    if not table:
        return lines + ["No complete runs in this phase.", ""]
    lines += ["Mean over seeds with its 95% t-interval; the best mean of each column is bold, `n/a` marks "
              "a metric that no run of the row logged.", ""]
    lines += table + [""] + notes(extra)
    lines += ["Parameters that differ between the configurations above:", ""] + config_table + [""]
    return lines


def incomplete(frame: pd.DataFrame) -> list[str]:
    """Return the table of trial runs that did not complete, with their reasons."""
    rest = frame[frame["state"] != COMPLETE]
    lines = ["### Trials that did not complete", ""]
    if rest.empty:
        return lines + ["Every trial run completed.", ""]
    rest = rest.sort_values(["state", "phase", "trial_number", "run_id"], kind="mergesort")
    rows = [[r.state, r.phase, _int_text(r.trial_number), r.variant, _int_text(r.seed), f"`{r.run_id}`",
             str(r.failure_reason or "")[:300]] for r in rest.itertuples()]
    return lines + text.table(["state", "phase", "trial", "variant", "seed", "MLflow run", "reason"], rows) + [""]


def _int_text(value: float) -> str:
    return "" if pd.isna(value) else str(int(value))


def figures(name: str, found: list[Figure], left_out: list[str]) -> list[str]:
    """Return the plots section: each image with its caption, then what was left out and why."""
    lines = ["## Plots", ""]
    for figure in found:
        lines += [f"### {figure.title}", "", f"![{figure.title}]({name}/{figure.file})", "", figure.caption, ""]
    return lines + notes(f"Left out: {item}" for item in left_out)


def images(name: str, found: list[Images]) -> list[str]:
    """Return the table of last-epoch sample grids and radius strips, one column per configuration."""
    lines = ["## Samples and radius strips", ""]
    if not found:
        return lines + ["No configuration to show.", ""]
    rows = []
    for kind, title in IMAGE_KINDS:
        row = [title]
        for item in found:
            file = item.files.get(kind)
            row.append(f"![{title} of {item.label}]({name}/{file})" if file else "not logged")
        rows.append(row)
    rows.append(["MLflow run (epoch)"] + [
        f"`{item.run_id}` ({', '.join(str(e) for e in sorted(set(item.epochs.values()))) or 'none'})" for item in found])
    lines += ["The last evaluation of one run (the lowest seed) of the best configuration and of each baseline.", ""]
    return lines + text.table([""] + [item.label for item in found], rows) + [""]


def reproduce(name: str, budget: str, uri: str | None, storage: str | None) -> list[str]:
    """Return the commands that rerun the study, regenerate this report and browse the runs."""
    options = ""
    if uri:
        options += f" --tracking-uri {uri}"
    if storage:
        options += f" --storage {storage}"
    budget = budget or "BUDGET"
    return [
        "## How to reproduce", "",
        "```",
        f"python -m suite.study {name} --budget {budget}{options}",
        f"python -m suite.report {name} --budget {budget}{options}",
        tracking.ui_command(uri),
        "```", "",
        "The first command resumes the study where its storage has it; the second rewrites this file from "
        "MLflow; the third shows every run at http://127.0.0.1:5000.", "",
    ]
