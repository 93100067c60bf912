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
