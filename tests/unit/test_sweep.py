"""Sweep settings: HyperDrive's expressions, samplings and policies, the Optuna pieces they
become (real Optuna, in-memory studies), the 0.1 names, bad input, and the group's shape."""

import math
import os
import subprocess
import sys
import warnings

import optuna
import pytest
from airflow.sdk import DAG

from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.tuning import SweepSettings
from airflow_tf.cluster.tuning_space import parse_space
from airflow_tf.operators import tuning_study
from airflow_tf.tuning import (
    BanditPolicy,
    BayesianParameterSampling,
    GridParameterSampling,
    MedianStoppingPolicy,
    RandomParameterSampling,
    TruncationSelectionPolicy,
    choice,
    lognormal,
    loguniform,
    normal,
    qloguniform,
    qnormal,
    quniform,
    randint,
    uniform,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_expressions_search_spaces_and_values():
    assert choice(16, 32).search() == {"type": "categorical", "choices": [16, 32]} == choice([16, 32]).search()
    assert randint(5).search() == {"type": "int", "low": 0, "high": 4, "step": 1}
    assert quniform(16, 128, 16).search() == {"type": "int", "low": 16, "high": 128, "step": 16}  # ints stay ints
    assert quniform(0.0, 1.0, 0.25).search()["step"] == 0.25
    assert loguniform(1e-4, 1e-1).search() == {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}
    assert qloguniform(1, 1000, 10).value(123.4) == 120
    # the normal family is searched over its quantile: the median quantile is mu
    assert normal(3.0, 2.0).value(0.5) == pytest.approx(3.0)
    assert normal(0.0, 1.0).value(0.975) == pytest.approx(1.96, abs=1e-3)
    assert lognormal(0.0, 1.0).value(0.5) == pytest.approx(1.0)
    assert qnormal(10.0, 3.0, 5).value(0.5) == 10


def test_hyperdrive_json_form_and_lists_parse():
    space = parse_space({"--lr": ["loguniform", [0.001, 0.1]], "--bs": ["choice", [[16, 32]]], "--opt": ["sgd", "adam"]})
    assert space["--lr"].kind == "loguniform" and space["--lr"].args == (0.001, 0.1)
    assert space["--bs"].args == (16, 32) and space["--opt"].args == ("sgd", "adam")
    assert {k: d.to_json() for k, d in space.items()} == {
        "--lr": ["loguniform", [0.001, 0.1]], "--bs": ["choice", [[16, 32]]], "--opt": ["choice", [["sgd", "adam"]]]}


def test_settings_travel_as_json():
    settings = SweepSettings(BayesianParameterSampling({"--lr": loguniform(1e-3, 1e-1), "--x": normal(0, 1)}, seed=2,
                                                       n_startup_trials=4),
                             "accuracy", "MAXIMIZE", BanditPolicy(slack_factor=0.2, delay_evaluation=2),
                             max_total_runs=9, max_concurrent_runs=3, max_duration_minutes=30)
    again = SweepSettings.from_json(settings.to_json())
    assert again.to_json() == settings.to_json() and again.sampling.n_startup_trials == 4
    assert again.policy == BanditPolicy(slack_factor=0.2, delay_evaluation=2)


def _sweep(**options):
    from airflow_tf import HyperparameterSweep

    base = {"hyperparameter_sampling": RandomParameterSampling({"--lr": uniform(0.1, 1.0)}), "max_total_runs": 2,
            "primary_metric_name": "loss", "source_directory": os.path.join(REPO, "tests", "dags", "sweep_toy"),
            "entry_script": "objective.py"}
    with DAG(dag_id="sweeps", schedule=None):
        return HyperparameterSweep(task_id="sweep", **{**base, **options})


@pytest.mark.parametrize(("options", "message"), [
    ({"hyperparameter_sampling": None}, "hyperparameter_sampling is required"),
    ({"max_concurrent_runs": 0}, "max_concurrent_runs must be an integer >= 1, got 0"),
    ({"primary_metric_goal": "best"}, "primary_metric_goal must be one of ['maximize', 'minimize'], got 'best'"),
    ({"policy": "fancy"}, "policy: unknown early termination policy 'fancy'; allowed: ['none', 'bandit', "),
    ({"policy": 3}, "policy must be BanditPolicy(...)"),
    ({"primary_metric_name": ""}, "primary_metric_name must be the name of a metric"),
    ({"max_total_runs": None}, "max_total_runs is required for random and Bayesian sampling"),
    ({"max_duration_minutes": 0}, "max_duration_minutes must be a number of minutes > 0"),
    ({"study_storage": "db.sqlite"}, "study_storage must be an Optuna storage URL"),
    ({"node_count": 0}, "node_count must be an integer >= 1"),
    ({"nodes": 2}, "HyperparameterSweep got unknown option(s) ['nodes']"),
])
def test_bad_sweep_options_fail_at_parse_time(options, message):
    with pytest.raises(SpecError) as err:
        _sweep(**options)
    assert message in str(err.value)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: parse_space({"--lr": ["gaussian", [0, 1]]}),
     "parameter_space['--lr']: unknown distribution 'gaussian'; allowed: ['choice', 'randint', 'uniform'"),
    (lambda: uniform(1.0, 1.0), "uniform needs low < high, got low=1.0, high=1.0"),
    (lambda: quniform(5, 1, 1), "quniform needs low < high"),
    (lambda: loguniform(0, 1), "loguniform needs low > 0, got low=0"),
    (lambda: loguniform(-6, -1), "HyperDrive's loguniform(a, b) took exponents"),
    (lambda: normal(0, 0), "normal needs sigma > 0"),
    (lambda: quniform(0, 1, 0), "quniform needs q > 0"),
    (lambda: uniform(0, "1"), "high must be a finite number"),
    (lambda: uniform(0, math.inf), "high must be a finite number"),
    (lambda: randint(0), "randint(upper) needs an integer upper >= 1"),
    (lambda: choice(), "choice needs at least one option"),
    (lambda: choice([1, 2], [3]), "choice options must be scalars"),
    (lambda: RandomParameterSampling({}), "RandomParameterSampling.parameter_space must be a non-empty dict"),
    (lambda: GridParameterSampling({"--lr": uniform(0, 1)}), "grid sampling takes only choice expressions"),
    (lambda: RandomParameterSampling({"--lr": [1]}, seed=-1), "RandomParameterSampling.seed must be an integer >= 0"),
    (lambda: BayesianParameterSampling({"--lr": [1]}, n_startup_trials=0), "n_startup_trials must be an integer >= 1"),
    (lambda: BanditPolicy(), "BanditPolicy needs exactly one of slack_factor or slack_amount"),
    (lambda: BanditPolicy(slack_factor=-0.1), "BanditPolicy.slack_factor must be a number > 0"),
    (lambda: MedianStoppingPolicy(evaluation_interval=0), "MedianStoppingPolicy.evaluation_interval must be an integer >= 1"),
    (lambda: MedianStoppingPolicy(delay_evaluation=-1), "MedianStoppingPolicy.delay_evaluation must be an integer >= 0"),
    (lambda: TruncationSelectionPolicy(truncation_percentage=100), "truncation_percentage must be an integer in 1..99"),
    (lambda: SweepSettings(GridParameterSampling({"--a": [1, 2]}), "loss", max_total_runs=3),
     "max_total_runs must be at most 2 (the grid's size)"),
])
def test_bad_expressions_samplings_and_policies(make, message):
    with pytest.raises(SpecError) as err:
        make()
    assert message in str(err.value)


def test_legacy_names_still_work_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="metric is deprecated, use primary_metric_name"):
        sweep = _sweep(hyperparameter_sampling=None, max_total_runs=None, primary_metric_name=None,
                       grid={"--lr": [0.1, 0.2, 0.3]}, metric="accuracy", mode="min", max_parallel_trials=2)
    settings = sweep.settings
    assert isinstance(settings.sampling, GridParameterSampling) and settings.max_total_runs == 3
    assert (settings.primary_metric_name, settings.primary_metric_goal.value, settings.max_concurrent_runs) == \
        ("accuracy", "minimize", 2)
    with pytest.warns(DeprecationWarning):
        sampled = _sweep(hyperparameter_sampling=None, max_total_runs=None, grid={"--lr": [1, 2, 3]}, sample=2, seed=7)
    assert sampled.settings.max_total_runs == 2 and sampled.settings.sampling.seed == 7
    with warnings.catch_warnings(), pytest.raises(SpecError, match="primary_metric_name given twice"):
        warnings.simplefilter("ignore")
        _sweep(metric="accuracy")


def test_group_shape_study_setup_controller_teardown():
    sweep = _sweep()
    assert [t.task_id for t in (sweep.study, sweep.controller, sweep.teardown)] == \
        ["sweep.study", "sweep.controller", "sweep.teardown"]
    assert sweep.teardown.is_teardown and sweep.study.task_id in sweep.teardown.upstream_task_ids
    assert sweep.controller.upstream_task_ids == {"sweep.study"}


def _study(direction, pruner):
    return optuna.create_study(direction=direction, pruner=pruner)


def _run(study, values, complete=True):
    trial = study.ask()
    for step, value in enumerate(values, start=1):
        trial.report(value, step)
    if complete:
        study.tell(trial, values[-1])
    return trial


@pytest.mark.parametrize(("direction", "slack", "good", "bad"), [
    ("maximize", {"slack_factor": 0.1}, 0.83, 0.80),   # best 0.9: bound 0.9 / 1.1 = 0.818
    ("maximize", {"slack_amount": 0.2}, 0.71, 0.69),   # bound 0.9 - 0.2 = 0.7
    ("minimize", {"slack_factor": 0.5}, 0.29, 0.31),   # best 0.2: bound 0.2 * 1.5 = 0.3
])
def test_bandit_pruner_keeps_trials_within_the_slack(direction, slack, good, bad):
    best = 0.9 if direction == "maximize" else 0.2
    pruner = tuning_study.BanditPruner(interval=1, delay=0, slack_factor=slack.get("slack_factor"),
                                       slack_amount=slack.get("slack_amount"))
    study = _study(direction, pruner)
    _run(study, [best, best])
    assert not _run(study, [good], complete=False).should_prune()
    assert _run(study, [bad], complete=False).should_prune()


def test_bandit_pruner_waits_for_its_delay_and_interval():
    pruner = tuning_study.BanditPruner(interval=2, delay=2, slack_factor=None, slack_amount=0.1)
    study = _study("maximize", pruner)
    _run(study, [0.9, 0.9, 0.9, 0.9])
    trial = study.ask()
    verdicts = []
    for step in range(1, 5):
        trial.report(0.1, step)
        verdicts.append(trial.should_prune())
    assert verdicts == [False, True, False, True]  # steps 2 and 4 only (delay 2, every 2)


def test_policies_become_optuna_pruners():
    space = RandomParameterSampling({"--x": uniform(0, 1)})
    median = tuning_study.pruner(SweepSettings(space, "loss", max_total_runs=3,
                                               policy=MedianStoppingPolicy(evaluation_interval=2, delay_evaluation=3)))
    assert isinstance(median, optuna.pruners.MedianPruner)
    assert (median._n_warmup_steps, median._interval_steps, median._n_startup_trials) == (3, 2, 1)
    truncation = tuning_study.pruner(SweepSettings(space, "loss", max_total_runs=3,
                                                   policy=TruncationSelectionPolicy(truncation_percentage=30)))
    assert isinstance(truncation, optuna.pruners.PercentilePruner) and truncation._percentile == 70.0
    assert isinstance(tuning_study.pruner(SweepSettings(space, "loss", max_total_runs=3)), optuna.pruners.NopPruner)


def test_truncation_selection_stops_the_worst_percent():
    settings = SweepSettings(RandomParameterSampling({"--x": uniform(0, 1)}), "loss", "minimize", max_total_runs=9,
                             policy=TruncationSelectionPolicy(truncation_percentage=50))
    study = _study("minimize", tuning_study.pruner(settings))
    for value in (0.1, 0.2, 0.3, 0.4):
        _run(study, [value])
    assert not _run(study, [0.15], complete=False).should_prune()
    assert _run(study, [0.35], complete=False).should_prune()


def test_ask_maps_sampled_numbers_to_script_values_and_moves_the_seed_on(tmp_path):
    settings = SweepSettings(RandomParameterSampling({"--lr": loguniform(1e-4, 1e-1), "--z": normal(5.0, 0.001),
                                                      "--bs": quniform(16, 64, 16)}, seed=1), "loss", max_total_runs=4)
    storage = tuning_study.storage_url(str(tmp_path / "sweep"))
    seen = []
    for _ in range(3):  # one controller step each: a fresh sampler per step must not repeat a draw
        study = tuning_study.open_study(storage, "s", settings)
        _, params = tuning_study.ask(study, settings)
        seen.append(params)
    assert len({p["--lr"] for p in seen}) == 3
    for params in seen:
        assert 1e-4 <= params["--lr"] <= 1e-1 and abs(params["--z"] - 5.0) < 0.01
        assert params["--bs"] in (16, 32, 48, 64) and isinstance(params["--bs"], int)
    assert os.path.isfile(tmp_path / "sweep" / tuning_study.STUDY_FILE)



def test_a_reader_holding_the_study_file_locked_delays_a_step_but_does_not_fail_it(tmp_path):
    """optuna-dashboard or a notebook may hold the SQLite study locked; SQLite's own 5-s wait
    would fail the controller's step with "database is locked". Held here for 6 s."""
    import sqlite3
    import threading

    settings = SweepSettings(RandomParameterSampling({"--x": uniform(0.0, 1.0)}, seed=1), "loss", max_total_runs=2)
    storage = tuning_study.storage_url(str(tmp_path / "sweep"))
    tuning_study.open_study(storage, "s", settings)  # the tables exist
    reader = sqlite3.connect(tmp_path / "sweep" / tuning_study.STUDY_FILE, check_same_thread=False)
    reader.execute("begin exclusive")
    release = threading.Timer(6.0, reader.rollback)
    release.start()
    try:
        _, params = tuning_study.ask(tuning_study.open_study(storage, "s", settings), settings)
        assert not release.is_alive()  # it waited for the lock (and was not simply never blocked)
    finally:
        release.cancel()
        reader.close()
    assert 0.0 <= params["--x"] <= 1.0

CHECK_IMPORTS = """
import runpy, sys
runpy.run_path(sys.argv[1])
print(",".join(sorted(m for m in ("optuna", "tensorflow", "matplotlib") if m in sys.modules)) or "none")
"""


def test_parsing_a_sweep_dag_imports_neither_optuna_nor_tensorflow():
    dag_file = os.path.join(REPO, "tests", "dags", "tf_sweep_toy.py")
    out = subprocess.run([sys.executable, "-c", CHECK_IMPORTS, dag_file], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "none"
