from pathlib import Path

import pytest

from jaxdyn import ConfigError, experiments, load_config
from jaxdyn.experiments.quickstart import QuickstartConfig


@pytest.fixture
def config_file(tmp_path):
    def write(text):
        path = tmp_path / "c.yaml"
        path.write_text(text)
        return path

    return write


def test_defaults_fill_in_and_overrides_apply(config_file):
    path = config_file("experiment: quickstart\ntrain:\n  steps: 7\n")
    cfg = load_config(path, QuickstartConfig, ["model.width=32", "solve.rtol=1e-4"])
    assert cfg.train.steps == 7 and cfg.model.width == 32 and cfg.solve.rtol == 1e-4
    assert cfg.train.batch_size == QuickstartConfig().train.batch_size
    with pytest.raises(Exception):  # noqa: B017 - read-only config
        cfg.train.steps = 3


@pytest.mark.parametrize(
    "text, overrides, message",
    [
        (
            "experiment: quickstart\ntrain:\n  stpes: 5\n",
            [],
            "unknown config key 'train.stpes' (did you mean 'steps'?)",
        ),
        (
            "experiment: quickstart\n",
            ["train.step=5"],
            "unknown config key 'train.step' (did you mean 'steps'?)",
        ),
        (
            "experiment: quickstart\n",
            ["model.widht=5"],
            "unknown config key 'model.widht' (did you mean 'width'?)",
        ),
        (
            "experiment: quickstart\ntrain:\n  steps: many\n",
            [],
            "bad value for config key 'train.steps'",
        ),
        ("experiment: quickstart\n", ["train.lr=fast"], "bad value for config key 'train.lr'"),
        (
            "experiment: quickstart\n",
            ["solve.solver=rk45"],
            "bad value for config key 'solve.solver': 'rk45' is not one of",
        ),
        ("experiment: quickstart\n", ["train.steps"], "must have the form key=value"),
        ("experiment: quickstart\n", ["train.lr=-1"], "'train.lr': -1.0 is not > 0"),
        ("experiment: quickstart\n", ["data.window=1"], "'data.window': 1 is not >= 2"),
        ("experiment: quickstart\n", ["data.y0=[1,2,3]"], "is not a list of 2 numbers"),
        ("experiment: quickstart\n", ["data.y0.0=5"], "bad value for config key 'data.y0.0'"),
        ("experiment: quickstart\n", ["solve=3"], "bad value for config key 'solve'"),
        ("experiment: quickstart\ntrain: 5\n", [], "bad value for config key 'train'"),
        ("experiment: quickstart\n  bad: [", [], "not valid YAML"),
        ("experiment: quickstart\n", ["train.eval_every=0"], "'train.eval_every': 0 is not >= 1"),
        ("experiment: quickstart\n", ["train.mode=best"], "'best' is not one of min, max"),
        ("experiment: quickstart\n", ["train.ema_decay=1.0"], "1.0 is not in [0, 1)"),
        (
            "experiment: quickstart\ntrain:\n  best_metric: null\n",
            ["train.patience=3"],
            "'train.patience' (3): early stopping needs train.best_metric",
        ),
        (
            "experiment: quickstart\n",
            ["train.best_metric=loss"],
            "'train.best_metric': 'loss' is not a validation metric",
        ),
        # The tests see one CPU device (no forced host devices).
        ("experiment: quickstart\n", ["train.devices=3"], "'train.devices' (3): JAX sees 1 device"),
        ("experiment: quickstart\n", ["train.devices=0"], "'train.devices': 0 is not >= 1"),
        ("experiment: quickstart\n", ["train.parallel=pmap"], "'pmap' is not one of compiler"),
    ],
)
def test_mistakes_name_the_key(config_file, text, overrides, message):
    with pytest.raises(ConfigError) as error:
        load_config(config_file(text), QuickstartConfig, overrides)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml", QuickstartConfig)


CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda path: path.stem)
def test_every_config_loads_against_its_schema(path):
    """Every shipped YAML validates against its experiment's schema and up-front check, and is
    named like its experiment."""
    experiment, cfg = experiments.load(path)
    assert experiment.name == path.stem == cfg.experiment


def test_solve_section_refuses_what_odeint_refuses(config_file):
    path = config_file("experiment: quickstart\n")
    with pytest.raises(ConfigError, match="'solve.solver' .*solver Euler has no error estimate"):
        load_config(path, QuickstartConfig, ["solve.solver=euler"])
    fixed = load_config(path, QuickstartConfig, ["solve.solver=euler", "solve.dt0=0.1"])
    assert fixed.solve.dt0 == 0.1


def test_validation_keys_need_an_experiment_with_a_validation_split(config_file):
    """`fit_from_config` without an `eval_fn` refuses the validation keys, naming the key,
    before training starts."""
    from jaxdyn.experiments._training import fit_from_config

    path = config_file("experiment: quickstart\n")
    train = load_config(path, QuickstartConfig, ["train.ema_decay=0.9"]).train
    with pytest.raises(ConfigError, match="'train.ema_decay' is set .* no validation split"):
        fit_from_config(None, None, None, train, key=None, run_dir=None, resume=False)
