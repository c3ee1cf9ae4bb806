"""The study command end to end on the smoke budget, with real Optuna and MLflow SQLite stores.

The end-to-end tests share one working folder, one Optuna storage and one MLflow store, because
creating a store takes seconds. Each test runs a study of its own name, copied from
studies/smoke.toml into the folder's studies/.
"""

import logging
import math
import re
import time
from pathlib import Path

import optuna
import pytest
import torch

from suite import objectives, study, studycli, studyfile, tracking, train
from suite.report import runs as report_runs

REPO = Path(__file__).resolve().parent.parent
STUDIES = sorted(p.stem for p in (REPO / "studies").glob("*.toml") if p.stem not in studyfile.RESERVED_FILES)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Train with one torch thread: the smoke nets are tiny, and on a shared CPU two threads wait on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    (folder / "studies").mkdir()
    cache = tmp_path_factory.mktemp("cache")
    return folder, cache


@pytest.fixture
def workdir(shared, monkeypatch):
    """The shared folder as the working folder, with its own suite cache (domain classifiers)."""
    folder, cache = shared
    monkeypatch.chdir(folder)
    monkeypatch.setenv("AEGAN_SUITE_CACHE", str(cache))
    return folder


# Replaces the smoke study's claim (which needs the dcgan baseline) by an empty confirmation.
NO_CONFIRMATION = ("[claims]\nC1", "[confirm]\nvariants = []\n\n[claims]\n#C1")


def _stores(folder):
    return f"sqlite:///{folder / 'optuna.db'}", f"sqlite:///{folder / 'mlflow.db'}"


def _copy_smoke(folder, name, replace=()):
    text = (REPO / "studies" / "smoke.toml").read_text()
    for old, new in replace:
        assert old in text, old
        text = text.replace(old, new)
    (folder / "studies" / f"{name}.toml").write_text(text)


def _run(folder, name, *extra):
    storage, uri = _stores(folder)
    return studycli.main([name, "--budget", "smoke", "--storage", storage, "--tracking-uri", uri, "--no-progress",
                          *extra])


def test_smoke_study_end_to_end(workdir):
    _copy_smoke(workdir, "smoke")
    storage, uri = _stores(workdir)
    assert _run(workdir, "smoke") == 0

    frame = study.trials_frame("smoke", storage)
    assert list(frame["number"]) == [0, 1, 2, 3]
    assert list(frame["state"]) == ["COMPLETE"] * 4
    assert list(frame["phase"]) == ["search", "search", "confirm", "confirm"]
    assert list(frame["variant"]) == ["search", "search", "best", "dcgan"]
    assert list(frame["seed"]) == [0, 0, 1000, 1000]
    assert frame["fid_domain"].notna().all()
    best = frame.loc[frame["fid_domain"][:2].idxmin()]
    assert frame.loc[2, "params_method.z_penalty"] == best["params_method.z_penalty"]

    parents = tracking.find_runs("smoke", {"kind": "study"}, uri)
    assert len(parents) == 1
    parent = tracking.read_run(parents[0], uri)
    assert parent["tags"]["budget"] == "smoke"
    assert parent["tags"]["claims"] == "C1"
    assert parent["tags"]["data_source"] == "mnist5k"
    assert re.fullmatch(r"smoke-smoke-\d{8}T\d{6}Z", parent["tags"]["mlflow.runName"])
    assert parent["status"] == "FINISHED"

    for _, row in frame.iterrows():
        run = tracking.read_run(row["mlflow_run_id"], uri)
        assert run["status"] == "FINISHED"
        assert run["tags"]["mlflow.parentRunId"] == parents[0]
        assert run["tags"]["kind"] == "trial"
        assert run["tags"]["study"] == "smoke"
        assert run["tags"]["phase"] == row["phase"]
        assert run["tags"]["variant"] == row["variant"]
        assert run["tags"]["seed"] == str(row["seed"])
        assert run["tags"]["trial_number"] == str(row["number"])
        assert run["tags"]["trial_state"] == "COMPLETE"
        assert run["params"]["train.seed"] == str(row["seed"])
        assert run["metrics"]["fid_domain"] == pytest.approx(row["fid_domain"])
        artifacts = tracking.list_artifacts(row["mlflow_run_id"], uri=uri)
        assert "checkpoint/model.safetensors" in artifacts
        assert "samples/epoch_0001.png" in artifacts
    assert tracking.read_run(frame.loc[3, "mlflow_run_id"], uri)["params"]["method.objective"] == "dcgan"

    attrs = study._load("smoke", storage).user_attrs
    assert attrs["parent_run_ids"] == parents
    assert attrs["objectives"] == ["fid_domain"]
    assert attrs["directions"] == ["minimize"]
    assert Path(attrs["study_file"]).name == "smoke.toml"
    assert (workdir / "reports" / "smoke.md").is_file()

    # Rerunning the finished study starts no trial.
    assert _run(workdir, "smoke", "--no-report") == 0
    assert len(study.trials_frame("smoke", storage)) == 4
    assert len(study._load("smoke", storage).user_attrs["parent_run_ids"]) == 2
    assert study.pareto_front("smoke", storage) == []


def test_interrupted_study_resumes(workdir, monkeypatch):
    _copy_smoke(workdir, "resumed", [('seeds = 1\n', 'seeds = 1\n"train.epochs" = 2\n'), NO_CONFIRMATION])
    storage, uri = _stores(workdir)
    real_train = train.train
    calls = []

    def interrupt_second_trial(cfg, **kwargs):
        calls.append(cfg.train.run_name)
        if cfg.train.run_name == "trial-1-search":
            def interrupt(epoch, metrics):
                raise KeyboardInterrupt
            kwargs["on_evaluation"] = interrupt
        return real_train(cfg, **kwargs)

    monkeypatch.setattr(train, "train", interrupt_second_trial)
    assert _run(workdir, "resumed", "--no-report") == 130
    frame = study.trials_frame("resumed", storage)
    assert list(frame["state"]) == ["COMPLETE", "FAIL"]
    first_run = frame.loc[0, "mlflow_run_id"]
    interrupted_run = frame.loc[1, "mlflow_run_id"]
    assert tracking.read_run(interrupted_run, uri)["status"] == "KILLED"

    monkeypatch.setattr(train, "train", real_train)
    assert _run(workdir, "resumed", "--no-report") == 0
    frame = study.trials_frame("resumed", storage)
    assert list(frame["state"]) == ["COMPLETE", "FAIL", "COMPLETE"]
    assert list(frame["phase"]) == ["search", "search", "search"]
    # Trial 0 was not run again; trial 2 retried trial 1 and continued its MLflow run and checkpoint.
    assert frame.loc[0, "mlflow_run_id"] == first_run
    assert len(tracking.find_runs("resumed", {"trial_number": 0}, uri)) == 1
    assert frame.loc[2, "mlflow_run_id"] == interrupted_run
    assert frame.loc[2, "params_method.z_penalty"] == frame.loc[1, "params_method.z_penalty"]
    resumed = tracking.read_run(interrupted_run, uri)
    assert resumed["status"] == "FINISHED"
    assert resumed["tags"]["trial_number"] == "2"
    assert [step for step, _ in tracking.metric_history(interrupted_run, "loss_D_real", uri)] == [1, 2]


def test_dead_worker_trial_retried(workdir, monkeypatch):
    _copy_smoke(workdir, "stale", [('seeds = 1\n', 'seeds = 1\n"train.epochs" = 2\n'), NO_CONFIRMATION,
                                   ("n_trials = 2\nseeds = 1", "n_trials = 1\nseeds = 1")])
    storage, uri = _stores(workdir)
    monkeypatch.setattr(study.storage, "HEARTBEAT_INTERVAL_S", 1)
    monkeypatch.setattr(study.storage, "GRACE_PERIOD_S", 1)
    real_train = train.train

    def die_after_first_epoch(cfg, **kwargs):
        record = kwargs["on_evaluation"]

        def die(epoch, metrics):
            record(epoch, metrics)
            raise SystemExit("worker died")  # neither the trainer nor Optuna handles it: the trial stays RUNNING

        return real_train(cfg, **{**kwargs, "on_evaluation": die})

    monkeypatch.setattr(train, "train", die_after_first_epoch)
    with pytest.raises(SystemExit):
        _run(workdir, "stale", "--no-report")
    frame = study.trials_frame("stale", storage)
    assert list(frame["state"]) == ["RUNNING"]
    dead_run = frame.loc[0, "mlflow_run_id"]

    time.sleep(2.5)  # the heartbeat is now older than the grace period
    monkeypatch.setattr(train, "train", real_train)
    assert _run(workdir, "stale", "--no-report") == 0
    frame = study.trials_frame("stale", storage)
    assert list(frame["state"]) == ["FAIL", "COMPLETE"]
    assert frame.loc[1, "user_attrs_mlflow_run_id"] == dead_run
    assert frame.loc[1, "params_method.z_penalty"] == frame.loc[0, "params_method.z_penalty"]
    assert tracking.read_run(dead_run, uri)["status"] == "FINISHED"
    assert [step for step, _ in tracking.metric_history(dead_run, "loss_D_real", uri)] == [1, 2]


def test_diverged_trial_recorded_as_failed(workdir, monkeypatch):
    _copy_smoke(workdir, "diverging", [("[claims]\nC1", '[confirm]\nvariants = ["best"]\n\n[claims]\n#C1')])
    storage, uri = _stores(workdir)
    real_train, real_step = train.train, objectives.Trainer.step

    def poisoned(self, x, z):
        stats = real_step(self, x, z)
        stats["loss_G_adv"] = torch.tensor(float("nan"))
        return stats

    def first_trial_diverges(cfg, **kwargs):
        step = poisoned if cfg.train.run_name == "trial-0-search" else real_step
        monkeypatch.setattr(objectives.Trainer, "step", step)
        return real_train(cfg, **kwargs)

    monkeypatch.setattr(train, "train", first_trial_diverges)
    assert _run(workdir, "diverging", "--no-report") == 0

    frame = study.trials_frame("diverging", storage)
    assert list(frame["state"]) == ["FAIL", "COMPLETE", "COMPLETE"]
    reason = frame.loc[0, "failure_reason"]
    assert "loss_G_adv became nan" in reason
    run = tracking.read_run(frame.loc[0, "mlflow_run_id"], uri)
    assert run["status"] == "FAILED"
    assert run["tags"]["trial_state"] == "FAIL"
    assert run["tags"]["failure_reason"] == reason
    assert not any(isinstance(v, float) and math.isnan(v) for v in frame["fid_domain"][1:])
    # The only complete search trial is the one confirmed as best.
    assert frame.loc[2, "params_method.z_penalty"] == frame.loc[1, "params_method.z_penalty"]


def test_late_better_search_trial_is_confirmed_again(workdir):
    """A search trial that finishes after the confirmation (a retry elsewhere) and beats the best."""
    _copy_smoke(workdir, "beaten", [("[claims]\nC1", '[confirm]\nvariants = ["best"]\n\n[claims]\n#C1')])
    storage, uri = _stores(workdir)
    spec = studyfile.load_spec("beaten")
    stored = study.open_study(spec, "smoke", storage)
    space = {"method.z_penalty": optuna.distributions.FloatDistribution(1e-3, 1.0, log=True)}
    stored.add_trial(optuna.trial.create_trial(params={"method.z_penalty": 0.01}, distributions=space, value=500.0,
                                               user_attrs={"phase": "search"}))
    old_run = tracking.Run.start("beaten", "old-best", None, {"kind": "trial", "phase": "confirm", "variant": "best",
                                                               "budget": "smoke"}, uri)
    old_run.end(tracking.FINISHED)
    stored.set_user_attr("best_trial", 0)
    stored.add_trial(optuna.trial.create_trial(
        params={"method.z_penalty": 0.01}, distributions=space, value=500.0,
        user_attrs={"phase": "confirm", "variant": "best", "seed": 1000, "source_trial": 0,
                    "mlflow_run_id": old_run.run_id}))
    stored.add_trial(optuna.trial.create_trial(params={"method.z_penalty": 0.5}, distributions=space, value=100.0,
                                               user_attrs={"phase": "search"}))

    assert _run(workdir, "beaten", "--no-report") == 0

    frame = study.trials_frame("beaten", storage)
    assert list(zip(frame["phase"], frame["state"])) == [("search", "COMPLETE"), ("confirm", "COMPLETE"),
                                                         ("search", "COMPLETE"), ("confirm", "COMPLETE")]
    assert study._load("beaten", storage).user_attrs["best_trial"] == 2
    assert frame.loc[3, "user_attrs_source_trial"] == 2
    assert frame.loc[3, "params_method.z_penalty"] == 0.5
    reason = "superseded: search trial 2 is now the best, not trial 0"
    assert tracking.read_run(old_run.run_id, uri)["tags"]["superseded"] == reason
    loaded = report_runs.load("beaten", uri)
    confirmed = report_runs.configurations(loaded.frame, "confirm")
    assert [c.run_ids for c in confirmed] == [[frame.loc[3, "mlflow_run_id"]]]
    old = loaded.frame[loaded.frame["run_id"] == old_run.run_id].iloc[0]
    assert (old["state"], old["failure_reason"]) == ("superseded", reason)


def test_multi_objective_pareto_front(workdir):
    _copy_smoke(workdir, "pareto", [
        ('objectives = ["fid_domain"]\ndirections = ["minimize"]',
         'objectives = ["fid_domain", "recall_domain"]\ndirections = ["minimize", "maximize"]'),
        ('sampler = "tpe"', 'sampler = "nsga2"\npopulation_size = 2'),
        ('pruner = "median"', 'pruner = "none"'),
        NO_CONFIRMATION,
        ("n_trials = 2\nseeds = 1", "n_trials = 3\nseeds = 1"),
    ])
    storage, _ = _stores(workdir)
    assert _run(workdir, "pareto", "--no-report") == 0
    frame = study.trials_frame("pareto", storage)
    assert len(frame) == 3
    points = {row.number: (row.fid_domain, -row.recall_domain) for row in frame.itertuples()}
    expected = [n for n, p in points.items()
                if not any(all(x <= y for x, y in zip(q, p)) and q != p for q in points.values())]
    assert study.pareto_front("pareto", storage) == sorted(expected)
    assert study.pareto_front("pareto", storage)
    importances = study.param_importances("pareto", storage)
    assert set(importances) <= {"method.z_penalty"}


@pytest.mark.parametrize("name", STUDIES)
def test_study_file_validates_and_dry_runs(name, capsys):
    spec = studyfile.load_spec(name)
    assert spec.description
    assert spec.claims or name != "smoke"
    for budget in studyfile.BUDGETS:
        assert budget in spec.budgets
        assert studycli.main([name, "--dry-run", "--budget", budget]) == 0
        output = capsys.readouterr().out
        assert f"budget {budget}" in output
        assert "total:" in output


def test_repository_studies_cover_every_claim():
    claims = {cid for name in STUDIES for cid in studyfile.load_spec(name).claims}
    assert claims == {f"C{i}" for i in range(1, 9)}
    assert any(studyfile.load_spec(name).multi_objective for name in STUDIES)


def test_list_shows_descriptions_and_claims(capsys):
    assert studycli.main(["--list"]) == 0
    output = capsys.readouterr().out
    for name in STUDIES:
        spec = studyfile.load_spec(name)
        line = next(line for line in output.splitlines() if line.startswith(name + " "))
        assert spec.description in line
        assert ",".join(spec.claim_ids) in line
    assert "claims" not in [line.split()[0] for line in output.splitlines()]


def test_unknown_study_lists_known(caplog):
    with caplog.at_level(logging.ERROR):
        assert studycli.main(["zpenalyt", "--dry-run"]) == 2
    message = caplog.text
    assert "unknown study 'zpenalyt'" in message
    assert "Did you mean 'zpenalty'?" in message
    for name in STUDIES:
        assert name in message


BAD_FILES = {
    "syntax": ('description = "x"\nobjectives = = 3\n', r"invalid TOML: .*line 2"),
    "unknown_top": ("descripton = 'x'\n", r"unknown key 'descripton'; did you mean 'description'\?"),
    "unknown_config": ("[base]\nmethod.z_penalti = 1.0\n", r"base: unknown config key 'method.z_penalti'"),
    "inverted": ('[space]\n"method.z_penalty" = { type = "float", low = 10.0, high = 0.1 }\n',
                 r"inverted bounds for space.method.z_penalty: low 10.0 is above high 0.1"),
    "bad_type": ('[space]\n"method.z_penalty" = { type = "gaussian", low = 0.1, high = 1.0 }\n',
                 r"invalid distribution for space.method.z_penalty: type 'gaussian'"),
    "log_zero": ('[space]\n"method.z_penalty" = { type = "float", low = 0.0, high = 1.0, log = true }\n',
                 r"a log scale needs low > 0"),
    "unknown_param_key": ('[space]\n"method.z_penalty" = { type = "float", low = 0.1, high = 1.0, lgo = true }\n',
                          r"unknown key space.method.z_penalty.'lgo'"),
    "owned": ("[base]\ntrain.seed = 3\n", r"base.train.seed may not be set"),
    "bad_value": ("[baselines.neg]\nmethod.z_penalty = -1.0\n", r"baselines.neg: invalid value for method.z_penalty"),
    "bad_claim": ('[claims]\nC1 = { treatment = "best", control = "nosuch" }\n',
                  r"claims.C1.control = 'nosuch' is not a confirmation variant"),
    "bad_metric": ("", r"unknown metric 'fid_domian'; did you mean fid_domain"),
}
_GOOD_HEAD = '''description = "a test study"
objectives = ["fid_domain"]
directions = ["minimize"]
'''


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_study_file_names_file_and_key(case, tmp_path, caplog):
    body, pattern = BAD_FILES[case]
    if case in ("syntax", "unknown_top"):
        text = body
    elif case == "bad_metric":
        text = _GOOD_HEAD.replace("fid_domain", "fid_domian")
    else:
        text = _GOOD_HEAD + body
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    with pytest.raises(studyfile.StudyError) as caught:
        studyfile.load_spec(str(path))
    assert str(caught.value).startswith(str(path))
    assert re.search(pattern, str(caught.value)), str(caught.value)
    with caplog.at_level(logging.ERROR):
        assert studycli.main([str(path), "--dry-run"]) == 2
    assert str(path) in caplog.text


def test_good_minimal_file_defaults(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(_GOOD_HEAD + '[space]\n"method.z_penalty" = { type = "float", low = 1e-3, high = 1.0, log = true }\n'
                    '[baselines.dcgan]\nmethod.objective = "dcgan"\n[budgets.quick]\nn_trials = 3\n')
    spec = studyfile.load_spec(str(path))
    assert spec.name == "mine"
    assert spec.sampler == "tpe"
    assert spec.pruner == "median"
    assert spec.confirm_variants == ("best", "dcgan")
    assert spec.log_params == ["method.z_penalty"]
    assert spec.budget("quick").seeds == 3
    with pytest.raises(studyfile.StudyError, match="no budget 'full'; this study defines quick"):
        spec.budget("full")


def test_data_override_renames_study(tmp_path):
    spec = studyfile.load_spec("zpenalty")
    (sub,) = studycli.sub_studies(spec, "ring8")
    assert sub.name == "zpenalty@ring8"
    assert sub.data_sources == ("ring8",)
    assert studycli.sub_studies(spec, "mnist5k")[0].name == "zpenalty"
    assert [s.name for s in studycli.sub_studies(studyfile.load_spec("modes"), None)] == [
        "modes@ring8", "modes@grid25", "modes@stacked-mnist"]
    assert studyfile.load_spec("modes@grid25").data_sources == ("grid25",)
    with pytest.raises(studyfile.StudyError, match="unknown data source 'mnst'"):
        studycli.sub_studies(spec, "mnst")


def test_budget_picks_sources_and_overrides_per_source(tmp_path):
    modes = studyfile.load_spec("modes")
    assert [s.name for s in studycli.sub_studies(modes, None, "quick")] == ["modes@ring8", "modes@grid25"]
    assert [s.name for s in studycli.sub_studies(modes, None, "full")] == [
        "modes@ring8", "modes@grid25", "modes@stacked-mnist"]
    assert studycli.sub_studies(modes, "stacked-mnist", "quick")[0].name == "modes@stacked-mnist"  # --data wins

    text = (REPO / "studies" / "modes.toml").read_text()
    text = text.replace("[budgets.full]", '[budgets.quick.sources.grid25]\n"train.epochs" = 9\n\n[budgets.full]')
    path = tmp_path / "layered.toml"
    path.write_text(text)
    spec = studyfile.load_spec(str(path))
    quick = spec.budget("quick")
    values = {source: studyfile.trial_values(spec, quick, source, {}, seed=0) for source in ("ring8", "grid25")}
    assert (values["ring8"]["train.epochs"], values["grid25"]["train.epochs"]) == (6, 9)
    assert values["grid25"]["model.ngf"] == 128  # the [sources.grid25] table still applies below the budget's

    for bad, message in [('data = ["ring8", "grid25"]', 'data = ["mnist5k"]'),
                         ("[budgets.quick.sources.grid25]", "[budgets.quick.sources.cifar10]")]:
        path.write_text(text.replace(bad, message))
        with pytest.raises(studyfile.StudyError, match="not a data source of this study|invalid value for "
                                                       "budgets.quick.data"):
            studyfile.load_spec(str(path))


def test_invalid_option_values_rejected(caplog):
    with caplog.at_level(logging.ERROR):
        assert studycli.main(["smoke", "--dry-run", "--threads", "0"]) == 2
        assert studycli.main(["smoke", "--dry-run", "--n-trials", "-1"]) == 2
        assert studycli.main(["smoke", "--dry-run", "--budget", "smoke", "--data", "mnst"]) == 2
    assert "invalid value for --threads: 0" in caplog.text
    assert "invalid value for --n-trials: -1" in caplog.text
    assert "--data mnst" in caplog.text


def test_ui_command_for_store():
    assert tracking.ui_command("sqlite:///mlflow.db") == "mlflow ui"
    assert tracking.ui_command("sqlite:////tmp/x/other.db") == "mlflow ui --backend-store-uri sqlite:////tmp/x/other.db"


def test_resumed_study_with_other_budget_rejected(workdir):
    _copy_smoke(workdir, "budgeted", [("n_trials = 2\nseeds = 1", "n_trials = 0\nseeds = 1"), NO_CONFIRMATION])
    storage, _ = _stores(workdir)
    assert _run(workdir, "budgeted", "--no-report") == 0
    spec = studyfile.load_spec("budgeted")
    with pytest.raises(studyfile.StudyError, match="was run with budget 'smoke', not 'quick'"):
        study.open_study(spec, "quick", storage)


def test_docs_example_is_valid(tmp_path):
    text = (REPO / "docs" / "studies.md").read_text()
    example = text.split("## A complete example", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    folder = tmp_path / "illustrations"
    folder.mkdir()
    for i in range(100):  # validation counts image files without decoding them
        (folder / f"{i}.png").write_bytes(b"")
    path = tmp_path / "example.toml"
    path.write_text(example.replace("/data/illustrations", str(folder)))
    spec = studyfile.load_spec(str(path))
    assert spec.objectives == ("fid_inception",)
    assert spec.log_params == ["method.z_penalty"]
    assert spec.base["data.image_size"] == 64
    assert set(spec.budgets) == {"quick", "full"}
