"""Verdicts on the method's claims, decided by the rules in ``studies/claims.toml``.

Each claim compares the confirmation runs of a treatment variant with those of a control
variant (or tests one variant alone). ``evaluate`` returns a ``Verdict``: supported,
contradicted or inconclusive, with every number that decided it. The file's header comment
states the rules in full; ``stats`` contains the tests.
"""

from __future__ import annotations

import math
import operator
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suite.metrics import keys
from suite.report import stats, text
from suite.report.runs import Configuration

CLAIMS_FILE = Path(__file__).resolve().parents[2] / "studies" / "claims.toml"
SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
ROLES = ("primary", "guard", "info")
KINDS = ("compare", "speed", "recovery")
FEATURE_METRICS = (keys.FID, keys.KID_MEAN, keys.IS_MEAN, keys.PRECISION, keys.RECALL, keys.F_SCORE, keys.FID_REC)
EXTRACTOR_ORDER = ("inception", "domain")  # the standard extractor first when a run has both
OPERATORS = {"==": operator.eq, "!=": operator.ne, ">": operator.gt, ">=": operator.ge,
             "<": operator.lt, "<=": operator.le}


class ClaimsError(ValueError):
    """An invalid entry in the claims file; the message names the claim and the field."""


@dataclass
class Claim:
    """One claim of the method, with the rule that decides it."""

    id: str
    title: str
    statement: str
    rule: str
    kind: str
    treatment: str | None
    control: str | None
    requires: list[dict[str, Any]]
    conditions: list[dict[str, Any]]
    settings: dict[str, Any]     # the kind's own fields: radius_max, metric, drop, ...


def load_claims(path: str | Path = CLAIMS_FILE) -> dict[str, Claim]:
    """Read and check the claims file; return the claims by id, in file order.

    Raises:
        ClaimsError: a missing file, invalid TOML or an invalid field.
    """
    path = Path(path)
    try:
        table = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ClaimsError(f"claims file not found: {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise ClaimsError(f"invalid TOML in {path}: {error}") from None
    found = {}
    for claim_id, entry in table.items():
        fixed = {"title", "statement", "rule", "kind", "treatment", "control", "requires", "conditions"}
        claim = Claim(
            id=claim_id, title=entry.get("title", ""), statement=entry.get("statement", ""),
            rule=entry.get("rule", ""), kind=entry.get("kind", "compare"),
            treatment=entry.get("treatment"), control=entry.get("control"),
            requires=list(entry.get("requires", [])), conditions=list(entry.get("conditions", [])),
            settings={k: v for k, v in entry.items() if k not in fixed},
        )
        _check_claim(claim, path)
        found[claim_id] = claim
    return found


def _check_claim(claim: Claim, path: Path) -> None:
    where = f"{path}: claim {claim.id}"
    if not claim.title or not claim.statement or not claim.rule:
        raise ClaimsError(f"{where}: title, statement and rule are required")
    if claim.kind not in KINDS:
        raise ClaimsError(f"{where}: invalid kind {claim.kind!r}; allowed: {', '.join(KINDS)}")
    conditions = claim.conditions + [c["fallback"] for c in claim.conditions if "fallback" in c]
    for condition in conditions:
        if "metric" not in condition or condition.get("role", "primary") not in ROLES:
            raise ClaimsError(f"{where}: a condition needs a metric and a role in {', '.join(ROLES)}: {condition}")
        tests = [k for k in ("expect", "above", "below") if k in condition]
        if len(tests) != 1 or condition.get("expect", "higher") not in ("higher", "lower"):
            raise ClaimsError(f"{where}: a condition needs exactly one of expect (higher or lower), "
                              f"above or below: {condition}")
    for need in claim.requires:
        if need.get("op") not in (*OPERATORS, "same") or "param" not in need:
            raise ClaimsError(f"{where}: a requirement needs a param and an op in "
                              f"{', '.join(OPERATORS)} or same: {need}")


@dataclass
class Check:
    """One evaluated condition: +1 holds, -1 violated, 0 undecided; ``text`` carries its numbers."""

    role: str
    direction: int
    text: str


@dataclass
class Verdict:
    """The verdict on one claim and the evidence for it."""

    claim: Claim
    verdict: str
    treatment: str | None
    control: str | None
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        """Return the verdict as one markdown list item."""
        sides = self.treatment or "?"
        if self.control:
            sides += f" vs {self.control}"
        parts = [c.text + ("" if c.role != "info" else " (reported only)") for c in self.checks]
        parts += self.notes
        return f"- **{self.claim.id} {self.claim.title}: {self.verdict}.** {sides}: " + "; ".join(parts) + "."


def decide(checks: list[Check]) -> str:
    """Return the verdict that the checks give, by the rule stated in the claims file."""
    used = [c for c in checks if c.role != "info"]
    if any(c.direction < 0 for c in used):
        return CONTRADICTED
    primary = [c for c in used if c.role == "primary"]
    if primary and all(c.direction > 0 for c in primary):
        return SUPPORTED
    return INCONCLUSIVE


def pick(configs: list[Configuration], variant: str | None) -> tuple[Configuration | None, str]:
    """Return the confirmation configuration of ``variant`` and a note when there was a choice.

    When a variant has several configurations (its params changed between study invocations),
    the one with the most seeds is used, ties going to the one with the latest run.
    """
    matching = [c for c in configs if c.phase == "confirm" and c.variant == variant]
    if not matching:
        return None, ""
    chosen = max(matching, key=lambda c: (c.seeds, c.runs["start_time"].max(), c.config_id))
    note = ""
    if len(matching) > 1:
        note = f"variant {variant} has {len(matching)} configurations, {chosen.label} used"
    return chosen, note


def metric_keys(name: str) -> list[str]:
    """Return the MLflow keys that metric ``name`` may be logged under, preferred first."""
    return [f"{name}_{e}" for e in EXTRACTOR_ORDER] if name in FEATURE_METRICS else [name]


def resolve_metric(name: str, sides: list[Configuration]) -> tuple[str | None, float | None, str]:
    """Return the MLflow key and the sample count that every side has for metric ``name``.

    Feature-space metrics take the first extractor of ``EXTRACTOR_ORDER`` that all sides have;
    of the sample counts all sides share, the largest is used. On failure the key is None and
    the text lists what each side logged.
    """
    candidates = metric_keys(name)
    for key in candidates:
        shared = None
        for config in sides:
            counts = set(config.counts(key))
            shared = counts if shared is None else shared & counts
        if shared:
            count = max((c for c in shared if c is not None), default=None)
            return key, count, ""
    have = ", ".join(f"{c.label} has {_logged(c, candidates)}" for c in sides)
    return None, None, f"{name}: no common metric and sample count ({have})"


def _logged(config: Configuration, candidates: list[str]) -> str:
    found = [f"{k} {text.count(n)}" for k in candidates for n in config.counts(k)]
    return ", ".join(found) or "none"


def outcome_text(outcome: stats.Outcome) -> str:
    """Format a test's name, p-value and result: ``Welch's t-test p = 0.003: holds``."""
    test = f"{outcome.test} p = {outcome.p:.2g}" if math.isfinite(outcome.p) else outcome.test
    word = {1: "holds", -1: "violated", 0: f"undecided, {outcome.note}"}[outcome.direction]
    return f"{test}: {word}"


def compare_text(label: str, a: stats.Summary, b: stats.Summary, names: tuple[str, str],
                 expect: str, outcome: stats.Outcome) -> str:
    """Format a two-sample check: both means with intervals, seeds, expectation and test."""
    return (f"{label}: {names[0]} {text.summary(a)} vs {names[1]} {text.summary(b)}, "
            f"{a.n} vs {text.plural(b.n, 'seed')}, expected {expect}; {outcome_text(outcome)}")


def threshold_text(label: str, summary: stats.Summary, name: str, side: str, bound: float,
                   outcome: stats.Outcome) -> str:
    """Format a one-sample check: the mean with its interval, seeds, the threshold and test."""
    return (f"{label}: {name} {text.summary(summary)}, {text.plural(summary.n, 'seed')}, expected {side} {bound:g}; "
            f"{outcome_text(outcome)}")
