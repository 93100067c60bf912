from pathlib import Path

from kdfair_utils import paths


def test_defaults_follow_the_environment_then_the_checkout(monkeypatch):
    root = paths.checkout_dir()
    assert root is not None and (root / "pyproject.toml").is_file()
    monkeypatch.delenv("KDFAIR_RUNS", raising=False)
    monkeypatch.delenv("KDFAIR_DATA", raising=False)
    assert paths.default_runs_dir() == root / "runs" and paths.default_data_dir() == root / "data"
    monkeypatch.setenv("KDFAIR_RUNS", "/somewhere/runs")
    monkeypatch.setenv("KDFAIR_DATA", "/somewhere/data")
    assert paths.default_runs_dir() == Path("/somewhere/runs") and paths.default_data_dir() == Path("/somewhere/data")


def test_usable_cores_follows_the_affinity_mask_and_the_cap(monkeypatch):
    import os

    from kdfair_utils.paths import usable_cores

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert (usable_cores(), usable_cores(2), usable_cores(8)) == (3, 2, 3)
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    assert (usable_cores(), usable_cores(4)) == (64, 4)
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert usable_cores() == 1
