"""Evaluation of a run: torch-fidelity metrics, mode coverage, the radius sweep and probes.

The trainer builds one ``Evaluator(cfg, dataset, device)``, calls ``prepare()`` once before
training and ``evaluate(nets, epoch, final)`` at each evaluation point. Metric names are
constants in ``suite.metrics.keys``.
"""

from suite.metrics import keys
from suite.metrics.evaluator import EvalResult, Evaluator, resolve_extractor
from suite.metrics.inception import InceptionWeightsError

__all__ = ["EvalResult", "Evaluator", "InceptionWeightsError", "keys", "resolve_extractor"]
