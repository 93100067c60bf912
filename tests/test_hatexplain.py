"""HateXplain's reader on a fixture of posts in the official JSON format (and the Hub's rows):
labels, kept and dropped posts and group memberships equal the values written into it."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from kdfair_utils import hatexplain as hx

NONE = ["None"]
# post id: (three labels, three target lists, tokens); the expected outcome is in EXPECTED
POSTS = {
    "1_twitter": (["normal"] * 3, [NONE] * 3, ["what", "a", "day"]),
    "2_gab": (["hatespeech", "hatespeech", "offensive"], [["Women"], ["Women", "Caucasian"], NONE],
              ["women", "are", "x"]),
    "3_gab": (["offensive", "offensive", "normal"], [["African"], ["African"], NONE], ["some", "slur"]),
    "4_twitter": (["hatespeech", "offensive", "normal"], [["Women"], ["Women"], ["Women"]], ["undecided", "one"]),
    "5_gab": (["normal", "normal", "offensive"], [["Men"], ["Men"], NONE], ["men", "again"]),
    "6_gab": (["hatespeech"] * 3, [["Women", "African"], ["Women", "Arab"], ["African"]], ["two", "targets", "here"]),
    "7_twitter": (["offensive"] * 3, [["Other"], ["Other"], ["Other"]], ["other", "target"]),
    "8_gab": (["offensive", "hatespeech", "offensive"], [["Women", "Men"], ["Men", "Women"], NONE], ["both"]),
    "9_twitter": (["normal", "normal", "hatespeech"], [["Asian", "Hispanic"], ["Hispanic", "Asian"], NONE], ["r"]),
    "10_gab": (["normal"] * 3, [NONE] * 3, ["a", "test", "post"]),
}
DIVISIONS = {"train": ["2_gab", "1_twitter", "3_gab", "6_gab", "8_gab"], "val": ["5_gab", "9_twitter"],
             "test": ["7_twitter", "10_gab"]}  # 4_twitter (undecided) is in none, as officially
# post id: (toxic, groups named by at least 2 annotators, gender code name, race code name)
EXPECTED = {
    "1_twitter": (0, set(), "none", "none"),
    "2_gab": (1, {"women"}, "women", "none"),            # Caucasian named once: not counted
    "3_gab": (1, {"african"}, "none", "african"),
    "5_gab": (0, {"men"}, "men", "none"),
    "6_gab": (1, {"women", "african"}, "women", "african"),  # Arab named once
    "7_twitter": (1, set(), "none", "none"),             # "Other" is no group
    "8_gab": (1, {"women", "men"}, "several", "none"),   # two gender groups: counted once, in "several"
    "9_twitter": (0, {"asian", "hispanic"}, "none", "several"),
    "10_gab": (0, set(), "none", "none"),
}


def official_entry(post_id: str, labels, targets, tokens) -> dict:
    toxic = [lab != "normal" for lab in labels]
    return {"post_id": post_id,
            "annotators": [{"label": lab, "annotator_id": 200 + k, "target": t} for k, (lab, t) in
                           enumerate(zip(labels, targets))],
            "rationales": [[int(i % 2 == 0) for i in range(len(tokens))] for t in toxic if t],
            "post_tokens": tokens}


def make_hatexplain(data_dir: Path, posts=POSTS, divisions=DIVISIONS) -> Path:
    """``data_dir/hatexplain/`` with the two official files."""
    root = data_dir / hx.FOLDER
    root.mkdir(parents=True)
    (root / "dataset.json").write_text(json.dumps({pid: official_entry(pid, *v) for pid, v in posts.items()}, indent=1))
    (root / "post_id_divisions.json").write_text(json.dumps(divisions))
    return root


def hub_rows(posts=POSTS, divisions=DIVISIONS) -> dict[str, list[dict]]:
    """The same posts as the Hub's conversion stores them (ClassLabel codes, annotators as lists)."""
    out = {}
    for split, hub_split in hx.HUB_SPLITS.items():
        out[hub_split] = []
        for pid in divisions[split]:
            e = official_entry(pid, *posts[pid])
            out[hub_split].append({"id": pid, "rationales": e["rationales"], "post_tokens": e["post_tokens"],
                                   "annotators": {"label": [hx.HUB_LABELS.index(a["label"]) for a in e["annotators"]],
                                                  "annotator_id": [a["annotator_id"] for a in e["annotators"]],
                                                  "target": [a["target"] for a in e["annotators"]]}})
    return out


def assert_fixture(splits: dict[str, hx.Posts]) -> None:
    assert set(splits) == {"train", "val", "test"}
    for split, ids in DIVISIONS.items():
        posts = splits[split]
        assert posts.ids == tuple(ids)  # the divisions' order
        assert posts.tokens == tuple(tuple(POSTS[i][2]) for i in ids)
        for row, pid in enumerate(ids):
            toxic, groups, gender, race = EXPECTED[pid]
            assert posts.labels[row] == toxic, pid
            assert {g for g in hx.GROUPS if posts.attributes[g][row]} == groups, pid
            assert hx.combined_values("gender")[posts.attributes["gender"][row]] == gender, pid
            assert hx.combined_values("race")[posts.attributes["race"][row]] == race, pid
    assert "4_twitter" not in sum((list(p.ids) for p in splits.values()), [])


def test_official_files_give_the_labels_and_groups_written_into_them(tmp_path):
    make_hatexplain(tmp_path)
    splits = hx.load_hatexplain(tmp_path)
    assert_fixture(splits)
    assert splits["train"].texts[0] == "women are x"
    assert splits["train"].labels.dtype == np.int64 and set(splits["train"].attributes) == {*hx.GROUPS, "gender", "race"}


def test_the_hubs_conversion_gives_the_same_posts(tmp_path, monkeypatch):
    """download=True without the official files reads the Hub's parquet branch through `datasets`."""
    calls = []

    def load_dataset(repo, **kwargs):
        calls.append((repo, kwargs))
        return hub_rows()

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    splits = hx.load_hatexplain(tmp_path, download=True)
    assert calls == [(hx.HUB_REPO, {"revision": "refs/convert/parquet"})]
    assert_fixture(splits)
    official = hx.read_official(make_hatexplain(tmp_path / "official"))
    for split in hx.SPLITS:
        assert splits[split].ids == official[split].ids and np.array_equal(splits[split].labels, official[split].labels)
        assert all(np.array_equal(splits[split].attributes[k], official[split].attributes[k]) for k in official[split].attributes)


def test_the_rules_one_by_one():
    assert hx.majority_label(["hatespeech", "offensive", "normal"]) is None  # undecided, not toxic
    assert hx.majority_label(["normal", "offensive", "offensive"]) == "offensive"
    assert hx.target_groups([["Women", "Women"], NONE, NONE]) == set()  # one annotator naming it twice is one vote
    assert hx.target_groups([["women"], ["Women"], NONE]) == {"women"}
    assert hx.combined_values("race") == ("none", "african", "arab", "asian", "caucasian", "hispanic", "several")


def test_missing_files_name_them_and_the_online_option(tmp_path):
    with pytest.raises(FileNotFoundError, match="lacks dataset.json, post_id_divisions.json.*download=True"):
        hx.load_hatexplain(tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing written


def _entry(pid, **change):
    e = official_entry(pid, *POSTS[pid])
    e.update(change)
    return e


@pytest.mark.parametrize("edit, match", [
    (lambda d, v: d["3_gab"].update(rationales=[[1, 0, 1]]), r"post '3_gab', field 'rationales': rationale 0 has 3 "
                                                             r"entries for 2 tokens"),
    (lambda d, v: d["2_gab"]["annotators"][0].update(label="hateful"), r"post '2_gab', field 'label': unknown label "
                                                                       r"'hateful'"),
    (lambda d, v: v["test"].append("99_gab"), r"post '99_gab', field 'test': listed in the test division but not in "
                                              r"the data"),
    (lambda d, v: v["val"].append("4_twitter"), r"post '4_twitter', field 'annotators': in the val division but "
                                                r"undecided"),
    (lambda d, v: d["1_twitter"].pop("post_tokens"), r"post '1_twitter', field 'post_tokens': missing"),
    (lambda d, v: d["5_gab"]["annotators"].pop(), r"post '5_gab', field 'annotators': expected 3 annotators, got 2"),
    (lambda d, v: d["6_gab"]["annotators"][1].update(target="Women"), r"post '6_gab', field 'target': each "
                                                                      r"annotator's target must be a list"),
    (lambda d, v: v["test"].append("2_gab"), r"post '2_gab', field 'test': listed twice in the divisions \(train and "
                                             r"test\)"),
])
def test_malformed_posts_name_the_post_and_the_field(edit, match, tmp_path):
    root = make_hatexplain(tmp_path)
    data = json.loads((root / "dataset.json").read_text())
    divisions = json.loads((root / "post_id_divisions.json").read_text())
    edit(data, divisions)
    (root / "dataset.json").write_text(json.dumps(data))
    (root / "post_id_divisions.json").write_text(json.dumps(divisions))
    with pytest.raises(ValueError, match=match):
        hx.load_hatexplain(tmp_path)


def synthetic_posts(n: int = 60, seed: int = 0) -> tuple[dict, dict]:
    """``n`` decided posts with words that carry the label, targets drawn so that every split has
    posts of each gender and several race groups; divisions 60/20/20 %."""
    rng = np.random.default_rng(seed)
    groups = [["Women"], ["Men"], ["African"], ["Arab"], ["Asian"], NONE]
    posts = {}
    for i in range(n):
        toxic = bool(rng.random() < 0.5)
        labels = ["offensive", "hatespeech", "offensive"] if toxic else ["normal", "normal", "offensive"]
        target = groups[i % len(groups)]
        words = ["you", "people", "are"] + (["vile", "scum"] if toxic else ["kind", "great"]) + [f"w{i % 7}"]
        posts[f"{i}_gab"] = (labels, [target, target, NONE], list(rng.permutation(words)))
    ids = list(posts)
    cut = (int(0.6 * n), int(0.8 * n))
    return posts, {"train": ids[:cut[0]], "val": ids[cut[0]:cut[1]], "test": ids[cut[1]:]}


def test_the_hubs_parquet_files_read_through_datasets_give_the_same_posts(tmp_path, monkeypatch):
    """The Hub's conversion as `datasets` returns it: rows written to parquet with the Hub's features
    (annotators a sequence of {label: ClassLabel, annotator_id, target}) and read back."""
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({
        "id": datasets.Value("string"),
        "annotators": datasets.Sequence({"label": datasets.ClassLabel(names=list(hx.HUB_LABELS)),
                                         "annotator_id": datasets.Value("int32"),
                                         "target": datasets.Sequence(datasets.Value("string"))}),
        "rationales": datasets.Sequence(datasets.Sequence(datasets.Value("int32"))),
        "post_tokens": datasets.Sequence(datasets.Value("string"))})
    files = {}
    for split, rows in hub_rows().items():
        files[split] = str(tmp_path / f"{split}.parquet")
        datasets.Dataset.from_list(rows, features=features).to_parquet(files[split])
    hub = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "cache"))
    monkeypatch.setattr(datasets, "load_dataset", lambda repo, **kwargs: hub)
    assert_fixture(hx.load_hatexplain(tmp_path / "empty", download=True))
