"""Scale-out: submitit workers share one cache and give the in-process runner's results."""

import numpy as np
import pytest

from kdfair_utils.cli import main
from kdfair_utils.grid import GridConfig, run_grid
from kdfair_utils.scaleout import run_grid_workers
from kdfair_utils.train import TrainConfig

pytest.importorskip("submitit")


def tiny():
    return GridConfig(data_options={"image_size": 16, "per_combination": 1}, teacher="resnet8", student="lenet5",
                      teacher_train=TrainConfig(epochs=1, batch_size=64, lr=0.05),
                      student_train=TrainConfig(epochs=1, batch_size=64, lr=0.05, grad_clip=5.0),
                      teacher_seeds=(0, 1), seeds=(0, 1, 2), temperatures=(2.0, 4.0))


@pytest.mark.slow
def test_submitit_local_workers_equal_the_in_process_runner(tmp_path, data_dir, capsys):
    # population_size 3: the 9 students form 3 chunks, so two workers have chunks to share
    here = run_grid(tiny(), runs_dir=tmp_path / "here", data_dir=data_dir, progress=False, population_size=3)
    there = run_grid_workers(tiny(), workers=2, executor="submitit", cluster="local", runs_dir=tmp_path / "there",
                             data_dir=data_dir, population_size=3, progress=True)
    out = capsys.readouterr().out
    assert "submitted 2 local worker(s)" in out and "workers trained 11 model(s)" in out
    assert there.trained == [] and len(there.loaded) == 11  # the workers trained everything
    assert [s.key for s in there.specs] == [s.key for s in here.specs]
    for pop in here.populations():
        assert np.array_equal(here.logits(pop), there.logits(pop))
    logs = list((tmp_path / "there" / "submitit").rglob("*_result.pkl"))
    assert len(logs) == 2


def test_debug_executor_runs_in_process_and_refuses_bad_options(tmp_path, data_dir):
    cfg = tiny().replace(seeds=(0,), temperatures=(2.0,), teacher_seeds=(0,))
    result = run_grid_workers(cfg, workers=2, executor="submitit", cluster="debug", runs_dir=tmp_path / "runs",
                              data_dir=data_dir, progress=False)
    assert len(result.loaded) == 3 and result.trained == []
    with pytest.raises(ValueError, match="workers=2 needs executor='submitit'"):
        run_grid_workers(cfg, workers=2, runs_dir=tmp_path / "other")
    with pytest.raises(ValueError, match="cluster"):
        run_grid_workers(cfg, executor="submitit", cluster="pbs", runs_dir=tmp_path / "other")
    with pytest.raises(ValueError, match="slurm.timeout_min"):
        run_grid_workers(cfg, executor="submitit", slurm={"timeout_min": -1}, runs_dir=tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_cli_refuses_slurm_options_without_submitit(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["grid", "--runs-dir", str(tmp_path / "r"), "--slurm-time", "60"])
    assert exit_.value.code == 2 and "--slurm-* options need --executor submitit" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_reading_a_cache_keyed_elsewhere_trains_nothing(tmp_path, data_dir):
    """numerics_as: the submitter reads the workers' models; a missing one is an error, not a retrain."""
    cfg = tiny().replace(seeds=(0,), temperatures=(2.0,), teacher_seeds=(0,))
    trained = run_grid(cfg, runs_dir=tmp_path / "runs", data_dir=data_dir, progress=False)
    from kdfair_utils.train import numerics

    found = numerics("cpu")
    again = run_grid(cfg, runs_dir=tmp_path / "runs", data_dir=data_dir, progress=False, numerics_as=found)
    assert again.trained == [] and [s.key for s in again.specs] == [s.key for s in trained.specs]
    other = {**found, "device": "cuda", "precision": "bf16"}
    other.pop("threads")
    with pytest.raises(RuntimeError, match="3 model.* are missing or damaged"):
        run_grid(cfg, runs_dir=tmp_path / "runs", data_dir=data_dir, progress=False, numerics_as=other)
