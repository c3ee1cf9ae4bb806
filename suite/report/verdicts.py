"""Apply a claim's rule to a study's confirmation runs (see ``claims`` and ``studies/claims.toml``)."""

from __future__ import annotations

import math
from typing import Any

from suite.report import rules, stats, text
from suite.report.claims import (
    INCONCLUSIVE, OPERATORS, Check, Claim, Verdict, compare_text, decide, metric_keys, outcome_text, pick,
    resolve_metric, threshold_text,
)
from suite.report.runs import Configuration


def evaluate(claim: Claim, variants: dict[str, str], configs: list[Configuration],
             read_history: rules.HistoryReader) -> Verdict:
    """Decide one claim from the confirmation configurations of a study.

    Args:
        claim: the claim and its rule.
        variants: ``treatment`` and ``control`` variant names from the study, overriding the
            claim's defaults.
        configs: every configuration of the study (only confirmation ones are used).
        read_history: ``(run_id, key) -> [(step, value)]``, the MLflow metric history.
    """
    names = {side: variants.get(side) or getattr(claim, side) for side in ("treatment", "control")}
    needs_control = claim.kind == "speed" or any("expect" in c for c in claim.conditions)
    sides, notes = {}, []
    for side in ("treatment", "control"):
        if side == "control" and not needs_control:
            continue
        if names[side] is None:
            return _missing(claim, names, f"the study names no {side} variant for {claim.id}")
        config, note = pick(configs, names[side])
        if config is None:
            return _missing(claim, names, f"no complete confirmation runs of variant {names[side]}")
        sides[side] = config
        notes += [note] if note else []
    unmet = _unmet_requirements(claim, sides)
    evaluator = {"compare": _compare, "speed": _speed, "recovery": _recovery}[claim.kind]
    checks = evaluator(claim, sides, read_history)
    verdict = INCONCLUSIVE if unmet else decide(checks)
    control = sides["control"].label if "control" in sides else None
    return Verdict(claim, verdict, sides["treatment"].label, control, checks, unmet + notes)


def _missing(claim: Claim, names: dict[str, str | None], note: str) -> Verdict:
    return Verdict(claim, INCONCLUSIVE, names["treatment"], names["control"], [], [note])


def _param_value(value: str, like: Any) -> Any:
    if isinstance(like, bool):
        return value.strip().lower() == "true"
    if isinstance(like, (int, float)):
        try:
            return float(value)
        except ValueError:
            return math.nan
    return value


def _unmet_requirements(claim: Claim, sides: dict[str, Configuration]) -> list[str]:
    unmet = []
    for need in claim.requires:
        key, op = need["param"], need["op"]
        if op == "same":
            if "control" in sides and sides["treatment"].param(key) != sides["control"].param(key):
                unmet.append(f"requires the same {key} on both sides (treatment "
                             f"{sides['treatment'].param(key)!r}, control {sides['control'].param(key)!r})")
            continue
        config = sides.get(need.get("side", "treatment"))
        if config is None:
            continue
        actual = config.param(key)
        if not OPERATORS[op](_param_value(actual, need["value"]), need["value"]):
            unmet.append(f"requires {key} {op} {need['value']!r} for {config.label}, which has {actual!r}")
    return unmet


def _compare(claim: Claim, sides: dict[str, Configuration], read_history: rules.HistoryReader) -> list[Check]:
    return [_condition(claim, condition, sides) for condition in claim.conditions]


def _condition(claim: Claim, condition: dict[str, Any], sides: dict[str, Configuration]) -> Check:
    role = condition.get("role", "primary")
    metric = condition["metric"]
    if metric.startswith("radius_rho:"):
        return _radius_condition(claim, condition, sides)
    logged = any(config.counts(key) for config in sides.values() for key in metric_keys(metric))
    if "fallback" in condition and not logged:
        # A metric that no side logged at all (FID on 2-D data) is replaced by the fallback in the claims file.
        check = _condition(claim, {**condition["fallback"], "role": role}, sides)
        return Check(role, check.direction, f"{metric} not logged, so by its fallback {check.text}")
    if "expect" in condition:
        treatment, control = sides["treatment"], sides["control"]
        key, count, problem = resolve_metric(metric, [treatment, control])
        if key is None:
            return Check(role, 0, problem)
        a, b, outcome = stats.welch(treatment.values(key, count), control.values(key, count), condition["expect"])
        line = compare_text(f"{key} ({text.count(count)})", a, b, (treatment.label, control.label),
                            condition["expect"], outcome)
        return Check(role, outcome.direction, line)
    config = sides[condition.get("side", "treatment")]
    key, count, problem = resolve_metric(metric, [config])
    if key is None:
        return Check(role, 0, problem)
    side, bound = ("above", condition["above"]) if "above" in condition else ("below", condition["below"])
    summary, outcome = stats.threshold(config.values(key, count), bound, side)
    return Check(role, outcome.direction,
                 threshold_text(f"{key} ({text.count(count)})", summary, config.label, side, bound, outcome))


def _radius_condition(claim: Claim, condition: dict[str, Any], sides: dict[str, Configuration]) -> Check:
    role = condition.get("role", "primary")
    config = sides[condition.get("side", "treatment")]
    name = condition["metric"].removeprefix("radius_rho:")
    radius_max = float(claim.settings.get("radius_max", 1.0))
    names = [f"{name}_{e}" for e in ("inception", "domain")] if name == "fid" else [name]
    columns = [c.removeprefix("metrics.") for c in config.runs.columns if c.startswith("metrics.")]
    key = next((n for n in names if len(rules.radius_keys(columns, n)) >= 3), None)
    if key is None:
        return Check(role, 0, f"radius sweep of {name}: fewer than 3 radii logged for {config.label}")
    rhos = rules.radius_rho(config, key, radius_max)
    side, bound = ("above", condition["above"]) if "above" in condition else ("below", condition["below"])
    summary, outcome = stats.threshold(rhos, bound, side)
    label = f"Spearman's rho of r (0 to {radius_max:g}) and radius {key}"
    return Check(role, outcome.direction, threshold_text(label, summary, config.label, side, bound, outcome))


def _speed(claim: Claim, sides: dict[str, Configuration], read_history: rules.HistoryReader) -> list[Check]:
    treatment, control = sides["treatment"], sides["control"]
    key, count, problem = resolve_metric(claim.settings.get("metric", "fid"), [treatment, control])
    if key is None:
        return [Check("primary", 0, problem)]
    target = stats.summarize(control.values(key, count)).mean
    if not math.isfinite(target):
        return [Check("primary", 0, f"{key}: the control has no final value to set a target")]
    reaches = {}
    for side, config in (("treatment", treatment), ("control", control)):
        found = [rules.epochs_to_reach(rules.history_at_count(read_history, run_id, key, count), target)
                 for run_id in config.run_ids]
        reaches[side] = [r for r in found if r is not None]
    a, b, outcome = stats.welch([r.epochs for r in reaches["treatment"]],
                                [r.epochs for r in reaches["control"]], "lower")
    reached = ", ".join(f"{sum(r.reached for r in reaches[s])} of {len(reaches[s])} {sides[s].label} runs"
                        for s in ("treatment", "control"))
    label = f"epochs to {key} <= {text.number(target)} (the control's mean final value, {text.count(count)}; reached by {reached})"
    return [Check("primary", outcome.direction,
                  compare_text(label, a, b, (treatment.label, control.label), "lower", outcome))]


def _recovery(claim: Claim, sides: dict[str, Configuration], read_history: rules.HistoryReader) -> list[Check]:
    config = sides["treatment"]
    s = claim.settings
    key, count, problem = resolve_metric(s.get("metric", "modes"), [config])
    if key is None:
        return [Check("primary", 0, problem)]
    episodes, seeds = rules.Episodes(), 0
    for run_id in config.run_ids:
        history = rules.history_at_count(read_history, run_id, key, count)
        if len(history) >= 2:
            seeds += 1
            episodes.add(rules.collapse_episodes(history, float(s["drop"]), int(s["recover_epochs"]),
                                                 float(s["recover_level"])))
    decided = episodes.recovered + episodes.not_recovered
    low, high, outcome = stats.proportion(episodes.recovered, decided, float(s["share"]))
    if seeds < stats.MIN_SEEDS:
        outcome = stats.Outcome(0, outcome.test, outcome.statistic, outcome.p,
                                f"fewer than {stats.MIN_SEEDS} seeds with a {key} history")
    share = f"{text.number(episodes.recovered / decided)} [{text.number(low)}, {text.number(high)}]" if decided else "n/a"
    line = (f"{key} ({text.count(count)}) drops > {float(s['drop']):.0%} in {text.plural(seeds, 'seed')} of {config.label}: "
            f"{episodes.recovered} recovered within {text.plural(int(s['recover_epochs']), 'epoch')}, "
            f"{episodes.not_recovered} did not, "
            f"{episodes.censored} too close to the end; share recovered {share}, expected above {s['share']:g}; "
            f"{outcome_text(outcome)}")
    return [Check("primary", outcome.direction, line)]
