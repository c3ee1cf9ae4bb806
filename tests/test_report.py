"""The study report, built from a real MLflow SQLite store written here with known numbers.

Means and intervals are checked against scipy's own t-interval, the verdicts against cases built
to be supported, contradicted and inconclusive, and the markdown against its own links.
"""

import dataclasses
import datetime
import math
import re
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy import stats as scipy_stats

from suite import config, studyfile, tracking
from suite.report import __main__ as report_cli
from suite.report import check_name, claims, runs, stats, verdicts, write_report

STUDY = "toy"
EPOCHS = 8
RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5)
N = 2000  # sample count of every evaluation metric, except search trial 5 (500)

# Final values per seed. dcgan's recall is missing in one run (None): a metric missing from a run.
BEST = {
    "fid_domain": [20.0, 21.0, 19.5, 20.5, 22.0],
    "modes": [9.6, 9.8, 9.7, 9.9, 9.5],
    "recall_domain": [0.60, 0.62, 0.61, 0.63, 0.59],
    "code_norm_rel_mean_holdout": [0.10, 0.12, 0.11, 0.09, 0.13],
    "sharpness_rel": [0.90, 0.92, 0.88, 0.91, 0.93],
}
DCGAN = {
    "fid_domain": [24.0, 25.0, 23.5, 26.0, 24.5],
    "modes": [7.0, 7.4, 6.8, 7.2, 7.1],
    "recall_domain": [0.45, 0.47, None, 0.44, 0.46],
}
VAEGAN = {"fid_domain": [40.0, 42.0], "sharpness_rel": [0.4, 0.45]}          # 2 seeds: inconclusive
RECON_ADV = {"fid_domain": [15.0, 15.5, 16.0]}                              # better FID: C5 contradicted
SEARCH_Z = [1e-3, 1e-2, 1e-1, 1.0, 3e-3, 0.3]


def _params(**values):
    return config.flatten(config.apply(config.RunConfig(), {"epochs": EPOCHS, "experiment": STUDY, **values}))


def _fid_history(final, start):
    """A decreasing FID curve ending at ``final``."""
    return [final + (start - final) * (1 - e / (EPOCHS - 1)) ** 2 for e in range(EPOCHS)]


def _modes_history(final):
    """Coverage with two collapse episodes (epochs 3 and 6) that recover one epoch later."""
    return [8.0, 9.5, 6.0, 9.4, 9.6, 6.5, 9.5, final]


def _image(seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8, generator=generator)


def _confirm_run(uri, parent, variant, seed, finals, params, curves):
    tags = {"study": STUDY, "kind": "trial", "phase": "confirm", "variant": variant, "seed": seed,
            "trial_number": 100 + len(variant) * 10 + seed, "budget": "quick", "trial_state": "COMPLETE",
            "data_fingerprint": "fp1234", "code_revision": "abc123", "device": "cpu", "data_source": "mnist5k",
            "eval_extractor": "domain"}
    run = tracking.Run.start(STUDY, f"{variant}-{seed}", _params(seed=seed, **params), tags, uri, parent)
    fid = finals["fid_domain"][seed]
    histories = {"fid_domain": _fid_history(fid, curves["fid_start"]), "epoch_seconds": [10.0 + seed] * EPOCHS}
    if "modes" in finals:
        histories["modes"] = _modes_history(finals["modes"][seed]) if curves["collapse"] else \
            [finals["modes"][seed]] * EPOCHS
    for epoch in range(1, EPOCHS + 1):
        metrics = {key: values[epoch - 1] for key, values in histories.items()}
        metrics.update({f"{key}/n": N for key in histories if key != "epoch_seconds"})
        if epoch == EPOCHS:
            for key, values in finals.items():
                if values[seed] is not None:
                    metrics[key], metrics[f"{key}/n"] = values[seed], N
            metrics.update(_radius(seed) if variant == "best" else {})
            accuracy = {"d_acc_real_holdout": 0.7, "d_acc_fake_eval": 0.6 + 0.01 * seed}
            if variant != "dcgan":
                accuracy["d_acc_rec_holdout"] = 0.99
            metrics.update(accuracy)
            metrics.update({f"{key}/n": N for key in accuracy})
        run.log_metrics(metrics, step=epoch)
    if seed == 0:
        run.log_image(_image(1), "samples/epoch_0001.png")
        run.log_image(_image(EPOCHS), f"samples/epoch_{EPOCHS:04d}.png")
        run.log_image(_image(99), f"radius_strip/epoch_{EPOCHS:04d}.png")
    run.end()
    return run.run_id


def _radius(seed):
    metrics = {}
    for r in RADII:
        metrics[f"radius/{r:.2f}/fid_domain"] = 100.0 - 60 * min(r, 1.0) + seed
        metrics[f"radius/{r:.2f}/sharpness_rel"] = 0.1 + 0.8 * min(r, 1.0) + 0.01 * seed
        metrics[f"radius/{r:.2f}/fid_domain/n"] = N
        metrics[f"radius/{r:.2f}/sharpness_rel/n"] = N
    return metrics


def _search_run(uri, parent, number, state, fid=None, count=N, budget="quick"):
    tags = {"study": STUDY, "kind": "trial", "phase": "search", "variant": "search", "seed": 0,
            "trial_number": number, "budget": budget, "device": "cpu", "data_source": "mnist5k"}
    z = SEARCH_Z[number] if number < len(SEARCH_Z) else 0.05
    run = tracking.Run.start(STUDY, f"trial-{number}", _params(z_penalty=z), tags, uri, parent)
    if fid is not None:
        run.log_metrics({"fid_domain": fid, "fid_domain/n": count, "epoch_seconds": 5.0}, step=1)
    status = {"COMPLETE": tracking.FINISHED, "PRUNED": tracking.KILLED, "FAIL": tracking.FAILED}[state]
    extra = {"trial_state": state}
    if number == 8:
        extra.update(failure="diverged", failure_reason="loss loss_D_real became nan at epoch 1, step 3")
    if number == 9:
        status = tracking.FINISHED
        extra.update(failure_reason="metric fid_domain is missing from the final evaluation")
    run.set_tags(extra)
    run.end(status)
    return run.run_id


@pytest.fixture(scope="module")
def scratch():
    """A folder on a RAM disk where there is one: SQLite syncs every commit to disk, which makes
    writing the 1,001-run store take about a minute on a plain disk instead of seconds."""
    base = "/dev/shm" if Path("/dev/shm").is_dir() else None
    folder = Path(tempfile.mkdtemp(prefix="report-test-", dir=base))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def store(scratch):
    uri = f"sqlite:///{scratch / 'mlflow.db'}"
    parent = tracking.Run.start(STUDY, "toy-quick", None, {
        "study": STUDY, "kind": "study", "budget": "quick", "description": "A toy study with known numbers.",
        "claims": "C1,C2,C3,C5,C7,C8", "data_source": "mnist5k"}, uri)
    ids = {"best": [], "dcgan": [], "vaegan": [], "recon_adv": []}
    for seed in range(5):
        ids["best"].append(_confirm_run(uri, parent.run_id, "best", seed, BEST,
                                        {"z_penalty": 0.01}, {"fid_start": 60.0, "collapse": True}))
        ids["dcgan"].append(_confirm_run(uri, parent.run_id, "dcgan", seed, DCGAN,
                                         {"objective": "dcgan"}, {"fid_start": 90.0, "collapse": False}))
    for seed in range(2):
        ids["vaegan"].append(_confirm_run(uri, parent.run_id, "vaegan", seed, VAEGAN,
                                          {"objective": "vaegan"}, {"fid_start": 90.0, "collapse": False}))
    for seed in range(3):
        ids["recon_adv"].append(_confirm_run(uri, parent.run_id, "recon_adv", seed, RECON_ADV,
                                             {"z_penalty": 0.01, "recon_adv": True}, {"fid_start": 60.0, "collapse": False}))
    for number, z in enumerate(SEARCH_Z):
        _search_run(uri, parent.run_id, number, "COMPLETE", fid=30 + 10 * abs(math.log10(z) + 2),
                    count=500 if number == 5 else N)
    for number in (6, 7):
        _search_run(uri, parent.run_id, number, "PRUNED", fid=70.0)
    _search_run(uri, parent.run_id, 8, "FAIL")
    _search_run(uri, parent.run_id, 9, "FAIL")
    parent.end()
    smoke = tracking.Run.start(STUDY, "toy-smoke", None, {"study": STUDY, "kind": "study", "budget": "smoke"}, uri)
    smoke_trial = _search_run(uri, smoke.run_id, 0, "COMPLETE", fid=999.0, budget="smoke")
    smoke.end()
    return SimpleNamespace(uri=uri, ids=ids, smoke=[smoke.run_id, smoke_trial])


class FakeStudy:
    """The four functions of suite.study, returning a real StudySpec and a known search record."""

    def __init__(self):
        raw = {
            "description": "A toy study with known numbers.",
            "objectives": ["fid_domain"], "directions": ["minimize"],
            "space": {"method": {"z_penalty": {"type": "float", "low": 1e-3, "high": 1.0, "log": True}}},
            "baselines": {"dcgan": {"method": {"objective": "dcgan"}},
                          "vaegan": {"method": {"objective": "vaegan"}},
                          "recon_adv": {"method": {"recon_adv": True}}},
            "claims": {"C1": {"treatment": "best", "control": "dcgan"}, "C2": {"treatment": "best"},
                       "C3": {"treatment": "best", "control": "vaegan"},
                       "C5": {"treatment": "recon_adv", "control": "best"},
                       "C7": {"treatment": "best", "control": "dcgan"}, "C8": {"treatment": "best"}},
        }
        self.spec = studyfile.parse(raw, Path(f"studies/{STUDY}.toml"))

    def load_spec(self, name):
        return self.spec

    def trials_frame(self, name, storage):
        values = [[30 + 10 * abs(math.log10(z) + 2)] for z in SEARCH_Z] + [None] * 4
        states = ["COMPLETE"] * 6 + ["PRUNED", "PRUNED", "FAIL", "FAIL"]
        return pd.DataFrame({"number": range(10), "state": states, "values": values, "phase": "search"})

    def param_importances(self, name, storage):
        return {"method.z_penalty": 1.0}

    def pareto_front(self, name, storage):
        return []


class FakeTwoObjectiveStudy(FakeStudy):
    """The same study optimising FID and modes, with trials 1 and 3 on the Pareto front."""

    def __init__(self):
        super().__init__()
        self.spec = dataclasses.replace(self.spec, objectives=("fid_domain", "modes"),
                                        directions=("minimize", "maximize"))

    def trials_frame(self, name, storage):
        frame = super().trials_frame(name, storage)
        frame["values"] = [[v[0], 5.0 + i] if v else None for i, v in enumerate(frame["values"])]
        return frame

    def pareto_front(self, name, storage):
        return [1, 3]


NOW = datetime.datetime(2026, 1, 2, 3, 4, tzinfo=datetime.timezone.utc)


@pytest.fixture(scope="module")
def report(store, scratch):
    out = scratch / "reports"
    path = write_report(STUDY, store.uri, "sqlite:///unused.db", out, budget="quick", study_api=FakeStudy(), now=NOW)
    return SimpleNamespace(path=path, text=path.read_text(), out=out)


def _table(markdown, first_header):
    """Return the rows (lists of cells) of the first table whose header starts with ``first_header``."""
    lines = markdown.splitlines()
    for index, line in enumerate(lines):
        if line.startswith(f"| {first_header} |"):
            block = []
            for row in lines[index:]:
                if not row.startswith("|"):
                    break
                block.append([c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]])
            return block[0], [r for r in block[2:]]
    raise AssertionError(f"no table starting with {first_header!r}")


def _row(rows, label):
    return next(r for r in rows if r[0] == label)


def _expected_cell(values):
    values = [v for v in values if v is not None]
    mean = np.mean(values)
    low, high = scipy_stats.t.interval(0.95, len(values) - 1, loc=mean, scale=scipy_stats.sem(values))
    return f"{mean:.4g} [{low:.4g}, {high:.4g}]"


def test_table_means_and_intervals(report):
    header, rows = _table(report.text.split("### Confirmation phase")[1], "configuration")
    fid = header.index(f"FID domain (n={N})")
    modes = header.index(f"modes (n={N})")
    recall = header.index(f"recall domain (n={N})")
    assert _row(rows, "best")[fid] == _expected_cell(BEST["fid_domain"])
    assert _row(rows, "dcgan")[fid] == _expected_cell(DCGAN["fid_domain"])
    assert _row(rows, "recon_adv")[fid] == "**" + _expected_cell(RECON_ADV["fid_domain"]).replace(" [", "** [", 1)
    assert _row(rows, "best")[modes].startswith("**")
    assert _row(rows, "dcgan")[recall] == _expected_cell(DCGAN["recall_domain"]) + " (4 of 5 runs)"
    assert _row(rows, "best")[header.index("seeds")] == "5"


def test_table_rows_and_run_ids(report, store):
    header, rows = _table(report.text.split("### Confirmation phase")[1], "configuration")
    assert [r[0] for r in rows] == ["recon_adv", "best", "dcgan", "vaegan"]  # FID, lower first
    assert _row(rows, "dcgan")[header.index("recall domain (n=2000)")] != "n/a"
    assert _row(rows, "vaegan")[header.index("recall domain (n=2000)")] == "n/a"
    for run_id in store.ids["best"]:
        assert f"`{run_id}`" in _row(rows, "best")[-1]
    seconds = _row(rows, "best")[header.index("training time s (sum of epoch_seconds)")]
    assert seconds.startswith(f"{np.mean([(10.0 + s) * EPOCHS for s in range(5)]):.4g} [")


def test_sample_counts_get_own_columns(report):
    header, rows = _table(report.text.split("### Search phase")[1], "configuration")
    assert "FID domain (n=2000)" in header
    assert "FID domain (n=500)" in header
    trial5 = _row(rows, "trial 5")
    assert trial5[header.index("FID domain (n=2000)")] == "n/a"
    assert trial5[header.index("FID domain (n=500)")] == f"{30 + 10 * abs(math.log10(0.3) + 2):.4g}"
    assert rows[-1][0] == "trial 5"  # no value in the ordering column sorts last


def test_verdicts_supported_contradicted_inconclusive(report):
    lines = {line.split(":")[0]: line for line in report.text.splitlines() if line.startswith("- **C")}
    assert lines["- **C1 Diversity"].startswith("- **C1 Diversity: supported.**")
    assert lines["- **C5 recon_adv = True hurts"].startswith("- **C5 recon_adv = True hurts: contradicted.**")
    assert "inconclusive" in lines["- **C3 VAE blurs the GAN"].split(".**")[0]
    assert "fewer than 3 seeds per side" in lines["- **C3 VAE blurs the GAN"]
    assert ": supported.**" in lines["- **C2 Centre property"]
    assert ": supported.**" in lines["- **C7 Speed"]
    assert ": supported.**" in lines["- **C8 Collapse recovers"]


def test_verdict_line_numbers(report):
    line = next(l for l in report.text.splitlines() if l.startswith("- **C1 "))
    p = scipy_stats.ttest_ind(BEST["modes"], DCGAN["modes"], equal_var=False).pvalue
    assert f"modes (n={N}): best {_expected_cell(BEST['modes'])} vs dcgan {_expected_cell(DCGAN['modes'])}" in line
    assert f"5 vs 5 seeds, expected higher; Welch's t-test p = {p:.2g}: holds" in line
    assert "5 vs 4 seeds" in line  # recall: one dcgan run has no value


def test_failed_and_pruned_listed_separately(report, store):
    assert "search: 6 complete, 2 pruned, 1 diverged, 1 failed, 0 interrupted, 0 running" in report.text
    header, rows = _table(report.text, "state")
    states = sorted((r[0], r[2]) for r in rows)
    assert states == [("diverged", "8"), ("failed", "9"), ("pruned", "6"), ("pruned", "7")]
    assert "loss loss_D_real became nan" in _row(rows, "diverged")[header.index("reason")]


def test_other_budget_left_out(report, store):
    for run_id in store.smoke:
        assert run_id not in report.text
    assert "smoke (1 trial run)" in report.text
    csv = pd.read_csv(report.out / STUDY / "runs.csv")
    assert set(csv["budget"]) == {"quick"}


def test_latest_budget_by_default(store, scratch):
    # The smoke invocation started last, so a report without a budget covers it alone.
    path = write_report(STUDY, store.uri, None, scratch / "latest", study_api=FakeStudy(), now=NOW)
    assert "| budget | smoke |" in path.read_text()
    assert "quick (25 trial runs)" in path.read_text()


def test_runs_csv_complete(report, store):
    csv = pd.read_csv(report.out / STUDY / "runs.csv")
    assert len(csv) == 5 + 5 + 2 + 3 + 10
    assert {"run_id", "phase", "variant", "seed", "params.method.z_penalty", "metrics.fid_domain"} <= set(csv.columns)
    best = csv[csv["variant"] == "best"].sort_values("seed")
    assert list(best["metrics.fid_domain"]) == BEST["fid_domain"]


def test_markdown_tables_and_links(report):
    lines = report.text.splitlines()
    index = 0
    while index < len(lines):
        if lines[index].startswith("|"):
            widths = set()
            while index < len(lines) and lines[index].startswith("|"):
                widths.add(len(re.split(r"(?<!\\)\|", lines[index])))
                index += 1
            assert len(widths) == 1, f"table ending at line {index} has rows of different widths"
        index += 1
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report.text)
    assert len(images) >= 8  # plots plus two images for each of four configurations
    for link in images:
        path = report.path.parent / link
        assert not Path(link).is_absolute()
        assert path.is_file(), link
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n"), link
    assert (report.path.parent / STUDY / "runs.csv").is_file()


def test_plots_and_images_present(report):
    for name in ("objective_vs_params", "training_curves", "radius_sweep", "d_accuracy", "optuna_history",
                 "optuna_importances"):
        assert f"]({STUDY}/{name}.png)" in report.text, name
    for variant in ("best", "dcgan", "vaegan", "recon_adv"):
        with Image.open(report.out / STUDY / f"{variant}_samples.png") as image:
            assert np.array_equal(np.asarray(image), _image(EPOCHS).permute(1, 2, 0).numpy())  # the last epoch's
        assert (report.out / STUDY / f"{variant}_radius_strip.png").is_file()
    assert "radius strip" in report.text
    assert f"python -m suite.study {STUDY} --budget quick" in report.text
    assert "mlflow ui" in report.text


def test_report_deterministic(report, store, scratch):
    other = scratch / "again"
    later = NOW + datetime.timedelta(days=3)
    path = write_report(STUDY, store.uri, "sqlite:///unused.db", other, budget="quick", study_api=FakeStudy(), now=later)
    first = [l for l in report.text.splitlines() if not l.startswith("Generated: ")]
    second = [l for l in path.read_text().splitlines() if not l.startswith("Generated: ")]
    assert first == second
    assert report.text != path.read_text()  # only the date line differs
    for png in sorted((report.out / STUDY).iterdir()):
        assert png.read_bytes() == (other / STUDY / png.name).read_bytes(), png.name


def test_pareto_front_for_two_objectives(store, scratch):
    path = write_report(STUDY, store.uri, "sqlite:///unused.db", scratch / "pareto", budget="quick",
                        study_api=FakeTwoObjectiveStudy(), now=NOW)
    text = path.read_text()
    assert f"![Pareto front]({STUDY}/pareto_front.png)" in text
    assert "2 of 6 complete search trials are on the front" in text
    assert (scratch / "pareto" / STUDY / "pareto_front.png").stat().st_size > 0


def test_without_storage_notes_it(store, scratch):
    path = write_report(STUDY, store.uri, None, scratch / "plain", budget="quick", study_api=FakeStudy(), now=NOW)
    text = path.read_text()
    assert "no Optuna storage given" in text
    assert "optuna_history.png" not in text
    assert "- **C1 Diversity: supported.**" in text


def test_without_study_file_uses_tags(store, scratch):
    path = write_report(STUDY, store.uri, None, scratch / "bare", budget="quick", now=NOW)
    text = path.read_text()
    assert "the study file could not be read" in text
    # Claim ids come from the parent run's tag, variants from claims.toml; C5 has no default treatment.
    assert "- **C1 Diversity: supported.**" in text
    assert "the study names no treatment variant for C5" in text


def test_study_without_trials(scratch):
    uri = f"sqlite:///{scratch / 'empty.db'}"
    tracking.Run.start("empty", "empty-smoke", None, {"study": "empty", "kind": "study", "budget": "smoke",
                                                      "claims": "C1"}, uri).end()
    path = write_report("empty", uri, None, scratch / "empty-reports", study_api=FakeStudy(), now=NOW)
    text = path.read_text()
    assert "search: 0 complete, 0 pruned" in text
    assert "No complete runs in this phase." in text
    assert "- **C1 Diversity: inconclusive.**" in text
    assert "no complete confirmation runs of variant best" in text
    assert len(pd.read_csv(scratch / "empty-reports" / "empty" / "runs.csv")) == 0


def test_cli_writes_report(store, scratch, monkeypatch):
    monkeypatch.chdir(scratch)  # no ./optuna.db here, so no Optuna storage is used
    out = scratch / "cli"
    assert report_cli.main([STUDY, "--tracking-uri", store.uri, "--budget", "quick", "--out-dir", str(out)]) == 0
    assert "## Verdicts" in (out / f"{STUDY}.md").read_text()
    assert report_cli.main(["no-such-study", "--tracking-uri", store.uri, "--out-dir", str(out)]) == 2
    assert report_cli.main([STUDY, "--tracking-uri", store.uri, "--budget", "full", "--out-dir", str(out)]) == 2
    assert report_cli.main(["../x", "--tracking-uri", store.uri, "--out-dir", str(out)]) == 2


@pytest.mark.parametrize("name", ["../evil", "a/b", ".hidden", "", "x y", "toy@../x/y"])
def test_unsafe_names_rejected(name, scratch):
    with pytest.raises(ValueError):
        check_name(name)
    with pytest.raises(ValueError):
        write_report(name, "sqlite:///unused.db", None, scratch / "never")
    assert not (scratch / "never").exists()


def test_safe_names_accepted():
    assert check_name("zpenalty") == "zpenalty"
    assert check_name("modes@ring8") == "modes@ring8"
    assert check_name("modes@imagefolder-data.v2") == "modes@imagefolder-data.v2"


def test_search_runs_pages(store):
    every = tracking.search_runs(STUDY, uri=store.uri)
    paged = tracking.search_runs(STUDY, uri=store.uri, page_size=7)
    assert [r["run_id"] for r in paged] == [r["run_id"] for r in every]
    assert len(every) == 2 + 5 + 5 + 2 + 3 + 10 + 1


def test_unknown_experiment_raises(store):
    with pytest.raises(tracking.ExperimentNotFound):
        tracking.search_runs("nothing-here", uri=store.uri)


def test_stats_interval_matches_scipy():
    values = [1.0, 2.5, 2.0, 4.0]
    summary = stats.summarize(values + [math.nan])
    low, high = scipy_stats.t.interval(0.95, 3, loc=np.mean(values), scale=scipy_stats.sem(values))
    assert summary.n == 4
    assert summary.low == pytest.approx(low)
    assert summary.high == pytest.approx(high)
    assert stats.summarize([3.0]).has_interval is False


def test_welch_needs_three_seeds_and_disjoint_intervals():
    assert stats.welch([1, 2, 3], [10, 11, 12], "lower")[2].direction == 1
    assert stats.welch([1, 2, 3], [10, 11, 12], "higher")[2].direction == -1
    assert stats.welch([1, 2], [10, 11, 12], "lower")[2].direction == 0
    assert stats.welch([1, 5, 9], [4, 6, 8], "lower")[2].direction == 0
    assert stats.welch([2, 2, 2], [3, 3, 3], "lower")[2].direction == 1


def test_unmet_requirement_inconclusive(store):
    study = runs.load(STUDY, store.uri, "quick")
    confirm = runs.configurations(study.frame, "confirm")
    claim = claims.load_claims()["C1"]
    verdict = verdicts.evaluate(claim, {"treatment": "vaegan", "control": "dcgan"}, confirm, lambda *_: [])
    assert verdict.verdict == "inconclusive"
    assert "requires method.objective == 'aegan' for vaegan, which has 'vaegan'" in verdict.line()
    verdict = verdicts.evaluate(claim, {"treatment": "best", "control": "missing"}, confirm, lambda *_: [])
    assert verdict.verdict == "inconclusive"
    assert "no complete confirmation runs of variant missing" in verdict.line()


def _points_frame():
    """Final metrics of a 2-D study (no FID, no recall) without MLflow: 3 seeds per variant."""
    rows = []
    for variant, objective, modes, kl, hq in (("best", "aegan", 8.0, 0.05, 0.9), ("dcgan", "dcgan", 5.0, 0.6, 0.8)):
        for seed in range(3):
            rows.append({"run_id": f"{variant}{seed}", "phase": "confirm", "variant": variant, "seed": seed,
                         "state": "complete", "config_id": variant, "start_time": seed, "trial_number": seed,
                         "params.method.objective": objective, "params.method.z_penalty": "0.01",
                         "metrics.modes": modes - 0.1 * seed, "metrics.modes/n": 2000,
                         "metrics.modes_kl": kl + 0.01 * seed, "metrics.modes_kl/n": 2000,
                         "metrics.hq_share": hq + 0.01 * seed, "metrics.hq_share/n": 2000})
    return pd.DataFrame(rows)


def test_fallback_metrics_on_points():
    confirm = runs.configurations(_points_frame(), "confirm")
    verdict = verdicts.evaluate(claims.load_claims()["C1"], {}, confirm, lambda *_: [])
    assert verdict.verdict == "supported"
    assert "recall not logged, so by its fallback modes_kl (n=2000)" in verdict.line()
    assert "fid not logged, so by its fallback hq_share (n=2000)" in verdict.line()


def test_claims_file_defines_all_claims():
    defined = claims.load_claims()
    assert list(defined) == [f"C{i}" for i in range(1, 9)]
    for claim in defined.values():
        assert claim.statement and claim.rule


def test_trial_state_rules():
    assert runs.trial_state("FINISHED", {"trial_state": "COMPLETE", "failure": "interrupted"}) == "complete"
    assert runs.trial_state("KILLED", {"trial_state": "PRUNED"}) == "pruned"
    assert runs.trial_state("FAILED", {"trial_state": "FAIL", "failure": "diverged"}) == "diverged"
    assert runs.trial_state("FINISHED", {"trial_state": "FAIL"}) == "failed"
    assert runs.trial_state("KILLED", {"failure": "interrupted"}) == "interrupted"


@pytest.mark.slow
def test_over_1000_runs_read_completely(scratch):
    uri = f"sqlite:///{scratch / 'many.db'}"
    started = time.perf_counter()
    parent = tracking.Run.start("many", "many-quick", None, {"study": "many", "kind": "study", "budget": "quick"}, uri)
    for number in range(1001):
        tags = {"kind": "trial", "phase": "search", "variant": "search", "seed": 0, "trial_number": number,
                "budget": "quick", "trial_state": "COMPLETE"}
        run = tracking.Run.start("many", f"t{number}", {"method.z_penalty": 1e-3 * (number + 1)}, tags, uri, parent.run_id)
        run.log_metrics({"fid_domain": 1000.0 - number, "fid_domain/n": N}, step=1)
    written = time.perf_counter() - started
    path = write_report("many", uri, None, scratch / "many-reports", budget="quick", study_api=FakeStudy(), now=NOW)
    csv = pd.read_csv(scratch / "many-reports" / "many" / "runs.csv")
    assert len(csv) == 1001
    assert set(csv["trial_number"]) == set(range(1001))
    assert "search: 1001 complete" in path.read_text()
    assert "981 more search configurations are in runs.csv" in path.read_text()
    assert written < 120, f"writing 1,001 runs took {written:.0f} s"
