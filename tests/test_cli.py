import contextlib
import dataclasses
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_experiments import HEADLINES, QUICKSTART_EULER, QUICKSTART_SIZES

from jaxdyn import experiments
from jaxdyn.cli import main

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = str(ROOT / "configs" / "quickstart.yaml")
# The runs below test the CLI's plumbing (records, exit codes, resuming), not the solver: the
# quickstart smoke's settings (fixed Euler steps, the direct adjoint: a fraction of what adaptive
# Dopri5 through the checkpointed adjoint compiles), and one optimiser (constant learning rate)
# lets the runs share one compiled training chunk. TINY: the data, model and training alone.
TINY = QUICKSTART_SIZES
EULER = [*QUICKSTART_EULER, "train.schedule=constant"]


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path, monkeypatch):
    """Runs without --out write to ./runs: keep them out of the source tree."""
    monkeypatch.chdir(tmp_path)  # tiny settings; the full target is measured by running the config


def test_list_shows_experiments_and_configs(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "quickstart" in out and "quickstart.yaml" in out


def test_show_prints_resolved_config_with_overrides(capsys):
    assert main(["show", QUICKSTART, "train.steps=123"]) == 0
    out = capsys.readouterr().out
    assert "steps: 123" in out and "solver: dopri5" in out


def test_config_found_by_name(capsys):
    assert main(["show", "quickstart"]) == 0
    assert "experiment: quickstart" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "configs/nope.yaml"], "config file not found: configs/nope.yaml"),
        (["run", QUICKSTART, "train.stpes=5"], "unknown config key 'train.stpes'"),
        (["run", QUICKSTART, "train.steps=abc"], "bad value for config key 'train.steps'"),
        (["show", QUICKSTART, "solve.adjoint=magic"], "'magic' is not one of"),
        (["run", "--resume", "/nonexistent/run"], "holds no run"),
        (["run", QUICKSTART, "experiment=other"], "'experiment' cannot be overridden"),
        (["run", QUICKSTART, *TINY, "solve.solver=euler"], "solver Euler has no error estimate"),
        (["run", QUICKSTART, "--seeds", "0", "2", "0"], "--seeds must be distinct non-negative"),
        (["run", QUICKSTART, "seed=3", "--seeds", "0", "1"], "drop the override seed=…"),
        (["run", QUICKSTART, "--seeds", "0", "1", "--num-processes", "2"], "not go with"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(argv, message, capsys, tmp_path):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxdyn: error: ") and message in err and err.count("\n") == 1
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists(), "a config mistake stops before any work starts"


def test_config_name_typo_suggests_the_closest(capsys):
    assert main(["run", "quikstart"]) == 2
    assert (
        "config file not found: quikstart (did you mean 'quickstart'?)" in capsys.readouterr().err
    )


def _float32(argv):
    """`main(argv)` in float32, as a user's run and the subprocess below run (the tests enable
    x64). All runs of this module are float32 with one setting, so they share one compiled
    training chunk and evaluation."""
    import jax

    with jax.enable_x64(False):
        return main(argv)


# 100 steps in chunks of 10 (a checkpoint each): the SIGKILL below lands mid-run.
SIZES = [s for s in TINY if not s.startswith(("train.steps=", "train.chunk="))]
SETTINGS = [*SIZES, *EULER, "train.steps=100", "train.chunk=10"]


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory):
    """A float32 run whose experiment raises once training (and its figures) are done: its
    directory, exit code and the last line of stderr. Module-scoped: it is also the
    uninterrupted run the killed run must reproduce bit for bit (its checkpoint is kept), and
    `test_resume_refuses_a_changed_config_and_keeps_the_run` resumes (a copy of) it, so the
    module trains one quickstart model in process, plus a resumed one."""
    from jaxdyn.experiments import _registry

    quickstart = experiments.get("quickstart")

    def fails_after_training(cfg, run_dir, resume):
        quickstart.run(cfg, run_dir, resume)
        raise ValueError("boom in the evaluation")

    out, err = tmp_path_factory.mktemp("failed") / "run", io.StringIO()
    failing = dataclasses.replace(quickstart, run=fails_after_training)
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stderr(err):
        patch.setitem(_registry._REGISTRY, "quickstart", failing)
        code = _float32(["run", QUICKSTART, *SETTINGS, "--out", str(out)])
    return out, code, err.getvalue().strip().splitlines()[-1]  # after the progress bar


def test_a_failure_during_the_run_exits_1_and_keeps_its_records(failed_run):
    """A bug after training (here a ValueError raised once `run` has finished its work) is not a
    user mistake: exit 1, one line naming the run directory, the traceback in error.log, and the
    metrics and checkpoint kept."""
    out, code, err = failed_run
    assert code == 1
    assert err == (
        f"jaxdyn: error: run failed in {out}: ValueError: boom in the evaluation (full traceback "
        f"in {out / 'error.log'}; metrics and the last checkpoint are kept: `jaxdyn run --resume "
        f"{out}` continues once the cause is fixed)"
    )
    log = (out / "error.log").read_text()
    assert log.startswith("Traceback") and "fails_after_training" in log
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 100
    assert (out / "checkpoint" / "state.eqx").is_file() and not (out / "summary.json").exists()


def test_unknown_experiment_suggests_the_closest(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("experiment: quickstrat\n")
    assert main(["show", str(path)]) == 2
    assert "unknown experiment 'quickstrat' (did you mean 'quickstart'?)" in capsys.readouterr().err


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """A run killed by SIGKILL (one subprocess) after 3 or more checkpoints, then resumed in
    process: its directory and the step it was killed at."""
    cut = tmp_path_factory.mktemp("killed") / "cut"
    env = os.environ | {"JAX_ENABLE_X64": "0", "PYTHONUNBUFFERED": "1"}
    victim = subprocess.Popen(
        [sys.executable, "-m", "jaxdyn.cli", "run", QUICKSTART, *SETTINGS, "--out", str(cut)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    info = cut / "checkpoint" / "info.json"
    deadline = time.time() + 300  # a hang guard: under load the victim may need > 120 s
    while time.time() < deadline and victim.poll() is None:
        if info.exists() and json.loads(info.read_text() or '{"step": 0}')["step"] >= 30:
            break
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = json.loads(info.read_text())["step"]
    summary_before = (cut / "summary.json").exists()
    assert _float32(["run", "--resume", str(cut)]) == 0
    return cut, killed_at, summary_before


def test_killed_run_resumes_bitwise_identical(killed_run, failed_run):
    """A run killed by SIGKILL resumes to the same bytes as an uninterrupted run (the failed
    run's training, finished before it raised): checkpoints are atomic and the step determines
    everything."""
    cut, killed_at, summary_before = killed_run
    # Killed mid-run: after 3 or more checkpoints; the 7 chunks left and their evaluations
    # take far longer than the 5 ms the loop above sleeps.
    assert 30 <= killed_at < 100 and not summary_before
    ours = (cut / "checkpoint" / "state.eqx").read_bytes()
    assert ours == (failed_run[0] / "checkpoint" / "state.eqx").read_bytes()
    lines = (cut / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(100))
    assert json.loads((cut / "summary.json").read_text())["resumed"] is True


def test_quickstart_smoke_writes_a_complete_run_dir(killed_run, capsys):
    """The resumed run's directory is complete, and the quickstart's headline figures (the
    quickstart's smoke: `test_experiments.HEADLINES`) are finite and in range."""
    out = killed_run[0]
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "summary.json",
        "checkpoint/state.eqx",
        "trajectory.png",
        "phase_portrait.png",
        "loss.png",
    ):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["experiment"] == "quickstart" and summary["steps"] == 100
    assert {"wall_time_s", "versions", "machine", "target_met"} <= set(summary)
    for (key,), low, high in HEADLINES["quickstart"]:
        assert math.isfinite(summary[key]) and low <= summary[key] <= high, (key, summary[key])
    assert summary["rel_l2_error"] > 0
    assert "steps: 100" in (out / "config.yaml").read_text()
    # The same directory again, without --resume, is refused rather than overwritten.
    assert main(["run", QUICKSTART, *SETTINGS, "--out", str(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_resume_refuses_a_changed_config_and_keeps_the_run(failed_run, tmp_path, capsys):
    """On the failed run's records (100 steps at a constant learning rate; the error message
    promises `--resume` continues them): a changed model is refused, longer training is not."""
    out = tmp_path / "run"
    shutil.copytree(failed_run[0], out)
    saved = (out / "config.yaml").read_text()
    assert main(["run", "--resume", str(out), "model.width=16"]) == 2
    assert "config key 'model.width' changed (8 -> 16)" in capsys.readouterr().err
    assert (out / "config.yaml").read_text() == saved  # still resumable
    # Extending the run (constant learning rate) is allowed.
    assert _float32(["run", "--resume", str(out), "train.steps=110"]) == 0
    assert json.loads((out / "summary.json").read_text())["steps"] == 110
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 110


def test_default_run_dirs_never_collide(tmp_path, monkeypatch):
    from jaxdyn._output import new_output_dir

    monkeypatch.chdir(tmp_path)
    first, second = new_output_dir("runs", "quickstart"), new_output_dir("runs", "quickstart")
    assert first != second and first.is_dir() and second.is_dir()


def test_config_path_with_equals_sign(tmp_path, capsys):
    folder = tmp_path / "lr=0.1"
    folder.mkdir()
    (folder / "q.yaml").write_text(Path(QUICKSTART).read_text())
    assert main(["show", str(folder / "q.yaml")]) == 0


def test_seeds_run_each_seed_and_report_mean_std_and_runs(tmp_path, capsys):
    """`--seeds`: one run directory per seed with the config's `seed` set, and the parent's
    summary with each figure's mean, sample std and per-seed values. A seed that fails stops
    the runs with exit 1 and a `--resume` of the parent, which keeps the finished seeds and
    continues (the experiment is a stand-in: this is the runner's bookkeeping, not training)."""
    from jaxdyn.experiments import _registry

    calls, failing = [], {1}

    def stand_in(cfg, run_dir, resume):
        calls.append((cfg.seed, resume))
        if cfg.seed in failing:
            raise ValueError(f"boom on seed {cfg.seed}")
        # A NaN on seed 2 only, in a figure of its own: counted, not averaged.
        return {"rel_l2": 0.1 * (cfg.seed + 1), "test": {"nll": float(cfg.seed), "n": 4},
                "target_met": cfg.seed != 2, "gap": float("nan") if cfg.seed == 2 else 1.0,
                "curve": [1.0, 2.0], "name": "x", **({"extra": 1.0} if cfg.seed == 0 else {}),
                "flag": None if cfg.seed == 1 else True}  # fmt: skip

    out = tmp_path / "seeds"
    probe = dataclasses.replace(experiments.get("quickstart"), run=stand_in)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(_registry._REGISTRY, "quickstart", probe)
        argv = ["run", QUICKSTART, "--seeds", "0", "1", "2", "train.steps=7",
                "train.schedule=constant", "--out", str(out)]  # fmt: skip
        assert main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert f"run failed in {out / 'seed_1'}: ValueError: boom on seed 1" in err
        assert f"`jaxdyn run --resume {out}` continues" in err
        assert calls == [(0, False), (1, False)]
        assert (out / "seed_0" / "summary.json").is_file() and not (out / "summary.json").exists()
        assert main(["run", "--resume", str(out), "--seeds", "1"]) == 2
        assert "drop --seeds" in capsys.readouterr().err
        # Seed 0 finished at 7 steps: a resume may not train the others longer.
        assert main(["run", "--resume", str(out), "train.steps=9"]) == 2
        assert "a multi-seed run resumes with its config unchanged" in capsys.readouterr().err
        failing.clear()
        assert main(["run", "--resume", str(out)]) == 0
    assert calls == [(0, False), (1, False), (1, True), (2, False)]  # seed 0 is not run again
    printed = capsys.readouterr().out
    record = json.loads((out / "summary.json").read_text())
    assert json.loads(printed[: printed.rindex("}") + 1])["statistics"] == record["statistics"]
    stats = record["statistics"]
    assert record["seeds"] == [0, 1, 2] and sorted(record["per_seed"]) == ["0", "1", "2"]
    assert stats["rel_l2"]["runs"] == pytest.approx([0.1, 0.2, 0.3])
    assert stats["rel_l2"]["mean"] == pytest.approx(0.2)
    assert stats["rel_l2"]["std"] == pytest.approx(0.1)  # sample std (ddof = 1)
    assert stats["test.nll"]["mean"] == pytest.approx(1.0) and stats["test.n"]["std"] == 0.0
    assert stats["target_met"] == {"true": 2, "of": 3}
    assert stats["gap"] == {"mean": None, "std": None, "runs": [1.0, 1.0, None], "non_finite": 1}
    assert "curve" not in stats and "name" not in stats and "resumed" not in stats
    assert stats["extra"] == {"left_out": "reported by 1 of 3 runs"}  # said, not dropped
    assert stats["flag"] == {"left_out": "a boolean in some runs only"}
    for seed in (0, 1, 2):
        config = (out / f"seed_{seed}" / "config.yaml").read_text()
        assert f"seed: {seed}\n" in config and "steps: 7" in config


@pytest.mark.parametrize("jit, error", [("filter_jit", "EquinoxRuntimeError"),
                                        ("jax_jit", "JaxRuntimeError")])  # fmt: skip
def test_a_check_failing_inside_a_compiled_program_is_named_in_the_one_line(
    jit, error, tmp_path, capsys
):
    """A solver's convergence check fails inside a compiled program as an Equinox runtime
    error, whose message opens with a note about stacks (or, under `jax.jit`, a callback's
    traceback): the one line names the check's own message."""
    import equinox as eqx
    import jax

    from jaxdyn.experiments import _registry

    def fails_inside_jit(cfg, run_dir, resume):
        compile_ = eqx.filter_jit if jit == "filter_jit" else jax.jit
        check = compile_(lambda x: eqx.error_if(x, x > 0, "inner solve did not converge"))
        return {"value": float(check(jax.numpy.asarray(1.0)))}

    out = tmp_path / "run"
    probe = dataclasses.replace(experiments.get("quickstart"), run=fails_inside_jit)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(_registry._REGISTRY, "quickstart", probe)
        assert main(["run", QUICKSTART, "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"jaxdyn: error: run failed in {out}: {error}: inner solve did not converge ("
    )
    assert "inner solve did not converge" in (out / "error.log").read_text()


def test_resume_check_handles_a_config_without_a_train_section():
    """`energy_sensitivity` has no `train` section: its resume check names a changed key as
    for any run (it raised a raw attribute error, so an interrupted `make results` could not
    continue there)."""
    from jaxdyn.config import ConfigError
    from jaxdyn.experiments import _runner

    _, cfg = experiments.load(ROOT / "configs" / "energy_sensitivity.yaml")
    _, other = experiments.load(ROOT / "configs" / "energy_sensitivity.yaml", ["seed=5"])
    _runner._check_resumable(cfg, cfg, Path("run"))
    with pytest.raises(ConfigError, match="config key 'seed' changed"):
        _runner._check_resumable(cfg, other, Path("run"))


def test_an_interrupted_multi_seed_run_says_how_to_resume_the_whole_run(tmp_path, capsys):
    """Ctrl-C during a seed's run: exit 130, and the message resumes the parent directory
    (the finished seeds are kept), not the seed's own."""
    from jaxdyn.experiments import _registry

    def stand_in(cfg, run_dir, resume):
        if cfg.seed == 1:
            raise KeyboardInterrupt
        return {"value": 1.0}

    out = tmp_path / "seeds"
    probe = dataclasses.replace(experiments.get("quickstart"), run=stand_in)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(_registry._REGISTRY, "quickstart", probe)
        assert main(["run", QUICKSTART, "--seeds", "0", "1", "--out", str(out)]) == 130
    assert f"`jaxdyn run --resume {out}` continues" in capsys.readouterr().err
    assert (out / "seed_0" / "summary.json").is_file()
