"""The cache checks itself, shares safely and never runs code from a file.

Each corruption of a cached model folder (truncated, bit-flipped, deleted, swapped, edited) is
detected and the model retrained to the same result; each corruption of cached evaluation
logits is detected and the model re-evaluated (not retrained); a read-only cache reports the file
instead; two runners on one cache train each model once; poisoned checkpoints and CIFAR
pickles do not execute.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kdfair_utils.cache import config_key, file_record, load_json, load_npz, save_json, save_npz, seal, unseal
from kdfair_utils.datasets import load_dataset, trifeature_arrays, trifeature_spec
from kdfair_utils.experiments import get_profile
from kdfair_utils.grid import run_grid
from kdfair_utils.models import load_state_dict
from kdfair_utils.results import Population

# 1 teacher, 2 NDS, 2 DS: about a second of training
SMALL = {"seeds": [0, 1], "teacher_seeds": [0], "main.temperatures": [2], "teacher": "resnet8",
         "main.teacher_train.epochs": 1, "student_train.epochs": 1, "data_options.image_size": 16,
         "data_options.per_combination": 1,
         "data_options.test_per_combination": 0, "data_options.twins_per_combination": 0}
CFG = get_profile("quick", SMALL).main


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, data_dir):
    """A complete small cache and its test logits, to copy and corrupt."""
    runs = tmp_path_factory.mktemp("pristine") / "runs"
    result = run_grid(CFG, runs_dir=runs, data_dir=data_dir, device="cpu", progress=False)
    logits = {s.key: result.logits(s.population)[[m.key for m in result.models(s.population)].index(s.key)]
              for s in result.specs}
    return runs, result, logits


def fresh_copy(pristine, tmp_path) -> Path:
    runs = tmp_path / "runs"
    shutil.copytree(pristine[0], runs)
    return runs


def folder(runs: Path, spec) -> Path:
    return runs / "models" / spec.dirname


def eval_file(runs: Path, spec, pristine, suffix: str = "npz") -> Path:
    """The cached evaluation logits (``npz``) or their record (``json``) of ``spec`` in ``runs``."""
    return runs / "evals" / pristine[1].eval_dir.name / f"{spec.dirname}.{suffix}"


def truncate(path: Path) -> None:
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])


def flip_bit(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))


def edit_meta(path: Path) -> None:
    meta = json.loads(path.read_text())
    meta["train_seconds"] = 1.0  # a plausible value, not the one the model took
    path.write_text(json.dumps(meta))


CORRUPTIONS = {
    "bit-flipped weights": (lambda f: flip_bit(f / "model.pt"), "model.pt does not match its sha256"),
    "deleted weights": (lambda f: (f / "model.pt").unlink(), "model.pt is missing"),
    "truncated meta.json": (lambda f: truncate(f / "meta.json"), "meta.json is unreadable"),
    "deleted meta.json": (lambda f: (f / "meta.json").unlink(), r"meta.json is missing \(training was interrupted"),
    "edited meta.json": (lambda f: edit_meta(f / "meta.json"), "meta.json does not match its checksum"),
}


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_a_corrupted_model_folder_is_detected_and_retrained(name, pristine, tmp_path, data_dir):
    runs = fresh_copy(pristine, tmp_path)
    damage, reason = CORRUPTIONS[name]
    victim = [s for s in pristine[1].specs if s.role == "ds"][1]
    damage(folder(runs, victim))
    (folder(runs, victim) / ".model.pt.x1y2.tmp").write_bytes(b"half-written")  # a killed writer's leftover
    result = run_grid(CFG, runs_dir=runs, data_dir=data_dir, device="cpu", progress=False)
    assert [s.key for s in result.trained] == [victim.key]
    assert set(result.repaired) == {victim.key}
    assert re.search(reason, result.repaired[victim.key])
    assert not list(folder(runs, victim).glob(".*.tmp"))
    assert np.array_equal(result.logits(victim.population)[1], pristine[2][victim.key])  # same model again


def edit_record(path: Path) -> None:
    record = json.loads(path.read_text())
    record["test_accuracy"] = 1.0  # a plausible value, not the one the model has
    path.write_text(json.dumps(record))


EVAL_CORRUPTIONS = {
    "truncated logits": (truncate, "npz", r"\.npz has .* bytes"),
    "bit-flipped logits": (flip_bit, "npz", r"\.npz does not match its sha256"),
    "deleted logits": (lambda f: f.unlink(), "npz", r"\.npz is missing"),
    "edited record": (edit_record, "json", r"\.json is unreadable or does not match its checksum"),
    "deleted record": (lambda f: f.unlink(), "json", None),
}


@pytest.mark.parametrize("name", EVAL_CORRUPTIONS)
def test_corrupted_evaluation_logits_are_recomputed_without_retraining(name, pristine, tmp_path, data_dir):
    runs = fresh_copy(pristine, tmp_path)
    damage, suffix, reason = EVAL_CORRUPTIONS[name]
    victim = [s for s in pristine[1].specs if s.role == "ds"][1]
    damage(eval_file(runs, victim, pristine, suffix))
    tmp = eval_file(runs, victim, pristine).parent / f".{victim.dirname}.npz.x1y2.tmp"
    tmp.write_bytes(b"half-written")  # a killed writer's leftover
    result = run_grid(CFG, runs_dir=runs, data_dir=data_dir, device="cpu", progress=False)
    assert result.trained == [] and len(result.loaded) == len(result.specs)
    assert list(result.evaluated) == [victim.key]
    if reason is None:
        assert result.evaluated[victim.key] is None
    else:
        assert re.search(reason, result.evaluated[victim.key])
    assert not tmp.exists()
    assert np.array_equal(result.logits(victim.population)[1], pristine[2][victim.key])  # the same floats


def test_a_deleted_teacher_file_is_retrained_before_its_students_need_it(pristine, tmp_path, data_dir):
    runs = fresh_copy(pristine, tmp_path)
    teacher = pristine[1].specs[0]
    (folder(runs, teacher) / "train_logits.npz").unlink()
    result = run_grid(CFG.replace(temperatures=[2, 4]), runs_dir=runs, data_dir=data_dir, device="cpu",
                      progress=False)
    assert result.repaired == {teacher.key: "train_logits.npz is missing"}
    assert {s.name for s in result.trained} == {"teacher seed 0", "DS@T=4 seed 0", "DS@T=4 seed 1"}


def test_swapped_logits_of_two_models_are_both_detected(pristine, tmp_path, data_dir):
    runs = fresh_copy(pristine, tmp_path)
    a, b = [s for s in pristine[1].specs if s.role == "nds"]
    fa, fb = eval_file(runs, a, pristine), eval_file(runs, b, pristine)
    blob = fa.read_bytes()
    fa.write_bytes(fb.read_bytes())
    fb.write_bytes(blob)
    result = run_grid(CFG, runs_dir=runs, data_dir=data_dir, device="cpu", progress=False)
    assert set(result.evaluated) == {a.key, b.key} and result.trained == []
    assert np.array_equal(result.logits(Population.nds()), np.stack([pristine[2][a.key], pristine[2][b.key]]))


def test_a_meta_json_copied_from_another_model_is_detected(pristine, tmp_path, data_dir):
    runs = fresh_copy(pristine, tmp_path)
    a, b = [s for s in pristine[1].specs if s.role == "nds"]
    for name in ("meta.json", "model.pt"):  # a whole folder's content under another name
        shutil.copy(folder(runs, a) / name, folder(runs, b) / name)
    result = run_grid(CFG, runs_dir=runs, data_dir=data_dir, device="cpu", progress=False)
    assert result.repaired == {b.key: "meta.json describes another model"}


def test_a_file_changed_after_verification_is_refused_when_read(pristine, tmp_path, data_dir):
    runs = fresh_copy(pristine, tmp_path)
    result = run_grid(CFG, runs_dir=runs, data_dir=data_dir, device="cpu", progress=False)
    nds = result.models(Population.nds())[0]
    flip_bit(eval_file(runs, nds, pristine))
    with pytest.raises(ValueError, match=rf"{nds.dirname}.npz: {nds.dirname}.npz does not match its sha256"):
        result.logits(Population.nds())


def test_evaluations_with_other_numerics_are_redone_here_or_refused_for_a_foreign_cache(pristine, tmp_path, data_dir):
    """An evaluation record computed under other numerics is recomputed; a cache keyed by another
    machine's numerics is never evaluated here."""
    from kdfair_utils.evaluations import ensure_evaluated
    from kdfair_utils.train import numerics

    runs = fresh_copy(pristine, tmp_path)
    nds = [s for s in pristine[1].specs if s.role == "nds"][0]
    path = eval_file(runs, nds, pristine, "json")
    record = unseal(load_json(path))
    save_json(path, seal({**record, "numerics": {**record["numerics"], "threads": 7}}))
    result = run_grid(CFG, runs_dir=runs, data_dir=data_dir, device="cpu", progress=False)
    assert result.trained == [] and list(result.evaluated) == [nds.key]
    assert "computed with other numerics" in result.evaluated[nds.key]
    path.unlink()
    foreign = {**numerics("cpu", "auto"), "device": "cuda"}
    with pytest.raises(RuntimeError, match="evaluate them where they were trained"):
        ensure_evaluated([nds], result.meta, result.dataset, result.eval_dir.name * 4, runs, device="cpu",
                         precision="auto", expected_numerics=foreign, progress=False)


def test_models_trained_on_other_data_are_retrained(pristine, tmp_path, data_dir):
    runs = fresh_copy(pristine, tmp_path)
    nds = [s for s in pristine[1].specs if s.role == "nds"][0]
    meta_path = folder(runs, nds) / "meta.json"
    meta = unseal(load_json(meta_path))
    save_json(meta_path, seal({**meta, "train_sha256": "0" * 64}))  # as if trained on other data
    result = run_grid(CFG, runs_dir=runs, data_dir=data_dir, device="cpu", progress=False)
    assert result.repaired == {nds.key: "it was trained on other data (the data cache changed)"}


def test_a_corrupted_data_cache_is_regenerated_and_a_replaced_one_detected(tmp_path, data_dir, capsys):
    spec = trifeature_spec(CFG.data_options)
    reference = trifeature_arrays(spec, data_dir)
    local = tmp_path / "data"
    original = trifeature_arrays(spec, local)
    path = next((local / "trifeature").glob("trifeature-*.npz"))
    truncate(path)
    again = trifeature_arrays(spec, local)
    assert "regenerating the Trifeature data cache" in capsys.readouterr().err
    assert all(np.array_equal(again[k], original[k]) and np.array_equal(again[k], reference[k]) for k in original)
    other = trifeature_spec({**CFG.data_options, "seed": 1})  # a valid file of another spec, renamed
    trifeature_arrays(other, local)
    shutil.copy(local / "trifeature" / f"trifeature-{config_key(other.to_dict())}.npz", path)
    again = trifeature_arrays(spec, local)
    assert "it holds other data" in capsys.readouterr().err
    assert np.array_equal(again["images"], original["images"])


@pytest.mark.parametrize("umask,mode", [(0o002, 0o664), (0o022, 0o644), (0o077, 0o600)])
def test_files_honour_the_umask_so_a_group_can_share_the_cache(umask, mode, tmp_path):
    import torch

    from kdfair_utils.cache import atomic_write, file_lock

    old = os.umask(umask)
    try:
        save_npz(tmp_path / "a.npz", x=np.zeros(2))
        save_json(tmp_path / "b.json", {"a": 1})
        atomic_write(tmp_path / "model.pt", lambda tmp: torch.save({"w": torch.zeros(2)}, tmp))
        with file_lock(tmp_path / "locks" / "c.lock"):
            pass
    finally:
        os.umask(old)
    for name in ("a.npz", "b.json", "model.pt", "locks/c.lock"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_a_teachers_change_makes_its_students_stale(pristine, tmp_path, data_dir):
    """A repaired teacher that came out different (as on a GPU) is not mixed with students
    distilled from the old one: they are retrained too."""
    runs = fresh_copy(pristine, tmp_path)
    teacher = pristine[1].specs[0]
    meta_path = folder(runs, teacher) / "meta.json"
    meta = unseal(load_json(meta_path))
    save_json(meta_path, seal({**meta, "content_sha256": "f" * 64}))  # as if retrained to other weights
    result = run_grid(CFG, runs_dir=runs, data_dir=data_dir, device="cpu", progress=False)
    students = [s.key for s in result.specs if s.role == "ds"]
    assert result.repaired == {k: "its teacher changed since it was distilled from it" for k in students}
    assert [s.key for s in result.trained] == students


def test_writing_one_data_file_leaves_another_writers_temporary_file_alone(tmp_path):
    folder_ = tmp_path / "trifeature"
    folder_.mkdir()
    other = folder_ / ".trifeature-0123456789abcdef.npz.k3j4.tmp"  # another spec, being written right now
    other.write_bytes(b"in progress")
    spec = trifeature_spec(CFG.data_options)
    mine = folder_ / f".trifeature-{config_key(spec.to_dict())}.npz.x9y8.tmp"  # this spec's, left by a kill
    mine.write_bytes(b"stale")
    trifeature_arrays(spec, tmp_path)
    assert other.exists() and not mine.exists()


def test_a_complete_read_only_cache_loads_and_an_incomplete_one_fails_before_training(pristine, tmp_path, data_dir,
                                                                                         monkeypatch):
    """Files and folders are made read-only; root ignores permission bits, so for root the
    access check itself reports the folder read-only (the code path a user without rights takes)."""
    runs = fresh_copy(pristine, tmp_path)
    if os.geteuid() == 0:
        real_access = os.access
        monkeypatch.setattr("kdfair_utils.validation.os.access", lambda path, mode: (
            False if str(path).startswith(str(runs)) and mode & os.W_OK else real_access(path, mode)))
    paths = [runs, *runs.rglob("*")]
    before = {p: p.stat().st_mtime_ns for p in paths}
    for path in paths:
        os.chmod(path, 0o555 if path.is_dir() else 0o444)
    try:
        result = run_grid(CFG, runs_dir=runs, data_dir=data_dir, device="cpu", progress=False)
        assert len(result.loaded) == 5 and not result.trained
        with pytest.raises(ValueError, match=r"runs_dir .* is not writable and 2 model\(s\) are not cached there"):
            run_grid(CFG.replace(temperatures=[2, 4]), runs_dir=runs, data_dir=data_dir, device="cpu", progress=False)
        for flip_bit_as_owner, reason in ((eval_file(runs, result.specs[1], pristine), "re-evaluate"),
                                          (folder(runs, result.specs[1]) / "model.pt", "retrain")):
            os.chmod(flip_bit_as_owner, 0o644)
            flip_bit(flip_bit_as_owner)
            os.chmod(flip_bit_as_owner, 0o444)
            name = flip_bit_as_owner.name
            with pytest.raises(ValueError, match=rf"{result.specs[1].dirname}.*: {name} does not match its sha256 "
                                                 rf"\(corrupted or replaced\), and runs_dir .* is not writable"):
                run_grid(CFG, runs_dir=runs, data_dir=data_dir, device="cpu", progress=False)
            flip_bit_as_owner.chmod(0o644)
            flip_bit(flip_bit_as_owner)  # back as it was
            flip_bit_as_owner.chmod(0o444)
        assert sorted(runs.rglob("*")) == sorted(paths[1:])  # nothing written
        flipped = {eval_file(runs, result.specs[1], pristine), folder(runs, result.specs[1]) / "model.pt"}
        assert all(p.stat().st_mtime_ns == before[p] for p in paths if p not in flipped)
    finally:
        for path in [runs, *runs.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)


def test_two_concurrent_runners_train_each_model_once(tmp_path, data_dir):
    overrides = {**SMALL, "seeds": [0, 1, 2], "teacher_seeds": [0, 1], "main.temperatures": [2, 4]}
    code = ("import sys, json; from kdfair_utils.experiments import get_profile; "
            "from kdfair_utils.grid import run_grid; "
            "cfg = get_profile('quick', json.loads(sys.argv[1])).main; "
            "r = run_grid(cfg, runs_dir=sys.argv[2], data_dir=sys.argv[3], device='cpu', progress=False); "
            "print(json.dumps([s.key for s in r.trained]))")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same numerics in every process

    def start(runs: Path, data: Path) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", code, json.dumps(overrides), str(runs), str(data)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    shared, alone = tmp_path / "shared", tmp_path / "alone"
    runners = [start(shared, tmp_path / "data-shared"), start(shared, tmp_path / "data-shared")]
    outputs = [p.communicate(timeout=300) for p in runners]
    assert all(p.returncode == 0 for p in runners), [err for _, err in outputs]
    trained = [json.loads(out) for out, _ in outputs]
    single = start(alone, tmp_path / "data-alone")
    out, err = single.communicate(timeout=300)
    assert single.returncode == 0, err
    every = json.loads(out)
    assert len(every) == 11
    assert sorted(trained[0] + trained[1]) == sorted(every)  # each model trained exactly once
    assert not set(trained[0]) & set(trained[1])
    print(f"runner 1 trained {len(trained[0])}, runner 2 trained {len(trained[1])}")
    evals = sorted(f.relative_to(shared) for f in (shared / "evals").rglob("*.npz"))
    assert len(evals) == 11 and evals == sorted(f.relative_to(alone) for f in (alone / "evals").rglob("*.npz"))
    for rel in evals + [f.relative_to(shared) for f in (shared / "models").rglob("train_logits.npz")]:
        a, b = load_npz(shared / rel), load_npz(alone / rel)  # bit for bit what one runner computes
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    for key_dir in (shared / "models").iterdir():
        other = alone / "models" / key_dir.name
        a, b = load_state_dict(key_dir / "model.pt"), load_state_dict(other / "model.pt")
        assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


class Payload:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_poisoned_checkpoint_is_refused_without_running_code(pristine, tmp_path, data_dir):
    import torch

    marker = tmp_path / "pwned"
    poisoned = tmp_path / "model.pt"
    torch.save({"weight": Payload(marker)}, poisoned)
    with pytest.raises(ValueError, match="not a loadable weights file"):
        load_state_dict(poisoned)
    assert not marker.exists()

    # in the cache, unsigned: the checksum catches it and the teacher is retrained
    runs = fresh_copy(pristine, tmp_path)
    teacher = pristine[1].specs[0]
    shutil.copy(poisoned, folder(runs, teacher) / "model.pt")
    result = run_grid(CFG, runs_dir=runs, data_dir=data_dir, device="cpu", progress=False)
    assert re.fullmatch(r"model.pt has \d+ bytes, \d+ were written \(truncated or replaced\)",
                        result.repaired[teacher.key])
    assert list(result.repaired) == [teacher.key]
    # re-signed by someone who knows the format: weights_only=True still refuses it, naming the file
    shutil.copy(poisoned, folder(runs, teacher) / "model.pt")
    meta_path = folder(runs, teacher) / "meta.json"
    meta = unseal(load_json(meta_path))
    meta["files"]["model.pt"] = file_record(folder(runs, teacher) / "model.pt")
    save_json(meta_path, seal(meta))
    augmenting = CFG.replace(**{"temperatures": [4], "student_train.augment": "flip"})  # DS that load the teacher
    with pytest.raises(ValueError, match=rf"{teacher.dirname}/model.pt: not a loadable weights file"):
        run_grid(augmenting, runs_dir=runs, data_dir=data_dir, device="cpu", progress=False)
    assert not marker.exists()


@pytest.mark.parametrize("target", ["batches.meta", "data_batch_3"])
def test_a_poisoned_cifar_file_is_refused_without_running_code(target, tmp_path):
    import pickle

    folder_ = tmp_path / "cifar-10-batches-py"
    folder_.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder_ / name, "wb") as fh:
            pickle.dump({b"labels": rng.integers(0, 10, 2).tolist(), b"data": rng.integers(0, 256, (2, 3072),
                                                                                            dtype=np.uint8)}, fh)
    with open(folder_ / "batches.meta", "wb") as fh:  # protocol 2, as the official (Python 2) files
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, fh, protocol=2)
    with open(folder_ / "test_batch", "wb") as fh:
        pickle.dump({b"labels": [1, 2], b"data": np.arange(6144).astype(np.uint8).reshape(2, 3072)}, fh, protocol=2)
    honest = load_dataset("cifar10", data_dir=tmp_path)  # the honest files load
    assert honest.num_classes == 10 and honest.test.images.reshape(2, -1)[1, 5] == (3072 + 5) % 256
    marker = tmp_path / "pwned"
    with open(folder_ / target, "wb") as fh:
        pickle.dump({b"label_names": Payload(marker), b"labels": [], b"data": Payload(marker)}, fh)
    with pytest.raises(ValueError, match=rf"{target}: not a CIFAR data file .*refusing to load posix.system"):
        load_dataset("cifar10", data_dir=tmp_path)
    assert not marker.exists()
