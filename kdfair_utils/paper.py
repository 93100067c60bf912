"""One place for the paper: its numbers, its temperature windows and the claims we test.

Mohammadshahi & Ioannou, "What's Left After Distillation? How Knowledge Transfer Impacts
Fairness and Bias", TMLR 2025 (arXiv 2410.08407). Numbers are transcribed from the TMLR pages
(Tables 1, 2, 4) and the authors' vector figures (Fig. 5), the CelebA-Male and very-high-T
CelebA-Young values approximately from a raster figure (:class:`Approx`); see
``shared/reference/paper.md`` of the project for sources. Notebooks show these tables beside ours,
:mod:`kdfair_utils.experiments` builds its grids from :data:`FAIRNESS_WINDOW` and
:data:`CLASS_BIAS_WINDOW`, and the report tests the claims of a run's data set
(:func:`claims_for`, :data:`CLAIM_SETS`): Trifeature (:data:`CLAIMS`, also the README's claims
table), CIFAR-100, Tiny ImageNet and ImageNet (Table 1) and CelebA (Table 2, Fig. 4b, Table 4).

A claim names *what* is compared (:class:`Select`: a population, or the distilled students
of a temperature window) and *how* (:class:`AtLeast`, :class:`Less`, :class:`Trend`,
:class:`CountTrend`, :class:`AboveChance`, :class:`Ordered`); :mod:`kdfair_utils.report`
measures each on a run and states the rule that decided.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Union

from .results import Population

# ----------------------------------------------------------------------------- windows
CLASS_BIAS_WINDOW = (2.0, 10.0)   # Table 1, Fig. 3: "a common range for T found in distillation literature"
FAIRNESS_WINDOW = (1.0, 10.0)     # Table 2, Table 4, Fig. 4 (first column)
# Trends over T are tested over T = 2..10: T = 1 (where the teacher's soft targets are nearly
# one-hot) and the very high T are reported separately, so one step cannot make a "trend".
TREND_WINDOW = (2.0, 10.0)
VERY_HIGH_WINDOW = (20.0, 40.0)   # App. B, Fig. 4 (second column), Fig. 5: T = 20, 30, 40

TEACHER, NDS = Population.teacher(), Population.nds()


def _ds_rows(values: dict[int, tuple]) -> dict[Population, tuple]:
    return {Population.ds(t): v for t, v in values.items()}


# ----------------------------------------------------------------------------- Table 1
@dataclass(frozen=True)
class ClassBiasRow:
    """Table 1: test accuracy (%, mean ± std over 5 seeds), #SC and #TC (None for teacher/NDS)."""

    accuracy: float
    accuracy_std: float
    sc: int | None = None
    tc: int | None = None


def _table1(teacher: tuple, nds: tuple, ds: dict[int, tuple]) -> dict[Population, ClassBiasRow]:
    rows = {TEACHER: ClassBiasRow(*teacher), NDS: ClassBiasRow(*nds)}
    rows.update({p: ClassBiasRow(*v) for p, v in _ds_rows(ds).items()})
    return rows


TABLE1: dict[str, dict[Population, ClassBiasRow]] = {
    "CIFAR-100, ResNet-56 → ResNet-20": _table1((70.87, 0.21), (68.39, 0.17), {
        2: (68.63, 0.24, 5, 15), 3: (68.92, 0.21, 7, 12), 4: (69.18, 0.19, 8, 9), 5: (69.77, 0.22, 9, 8),
        6: (69.81, 0.15, 9, 8), 7: (69.38, 0.18, 10, 6), 8: (69.12, 0.21, 13, 6), 9: (69.35, 0.27, 18, 9),
        10: (69.24, 0.19, 22, 11)}),
    "CIFAR-100, DenseNet-169 → DenseNet-121": _table1((72.43, 0.15), (70.17, 0.16), {
        2: (70.93, 0.21, 4, 12), 3: (71.08, 0.17, 4, 11), 4: (71.16, 0.23, 5, 9), 5: (71.42, 0.18, 8, 9),
        6: (71.39, 0.22, 8, 8), 7: (71.34, 0.16, 9, 7), 8: (71.29, 0.13, 11, 7), 9: (71.51, 0.23, 12, 9),
        10: (71.16, 0.21, 14, 10)}),
    "ImageNet, ResNet-50 → ResNet-18": _table1((76.1, 0.13), (68.64, 0.21), {
        2: (68.93, 0.23, 77, 314), 3: (69.12, 0.18, 113, 265), 4: (69.57, 0.26, 169, 237), 5: (69.85, 0.19, 190, 218),
        6: (69.71, 0.13, 212, 193), 7: (70.05, 0.18, 295, 174), 8: (70.28, 0.27, 346, 138), 9: (70.52, 0.09, 371, 101),
        10: (70.83, 0.15, 408, 86)}),
    "ImageNet, ViT-Base → TinyViT": _table1((81.02, 0.07), (78.68, 0.19), {
        2: (78.79, 0.21, 83, 397), 3: (78.94, 0.14, 137, 318), 4: (79.12, 0.23, 186, 253), 5: (79.51, 0.17, 215, 206),
        6: (80.03, 0.19, 268, 184), 7: (79.62, 0.23, 329, 161), 8: (79.93, 0.12, 365, 127), 9: (80.16, 0.17, 397, 96),
        10: (79.98, 0.12, 426, 78)}),
}

FIG3 = ("CIFAR-100, ResNet-56 → ResNet-20", "ImageNet, ResNet-50 → ResNet-18")  # the panels of Fig. 3


# ----------------------------------------------------------------------------- Table 2
@dataclass(frozen=True)
class FairnessRow:
    """Table 2: accuracy, EOD and DPD in %, mean ± std over 5 seeds."""

    accuracy: float
    accuracy_std: float
    eod: float
    eod_std: float
    dpd: float
    dpd_std: float


def _table2(rows: dict[Population, tuple]) -> dict[Population, FairnessRow]:
    return {p: FairnessRow(*v) for p, v in rows.items()}


TABLE2: dict[str, dict[Population, FairnessRow]] = {
    "Trifeature (shape; colour), ResNet-20 → LeNet-5": _table2({
        TEACHER: (100.00, 0.00, 0.00, 0.00, 3.64, 0.00), NDS: (90.33, 0.07, 2.81, 0.05, 4.12, 0.08), **_ds_rows({
            1: (92.70, 0.15, 1.67, 0.04, 3.75, 0.07), 2: (92.41, 0.08, 1.60, 0.06, 3.56, 0.05),
            3: (92.66, 0.12, 1.38, 0.02, 3.52, 0.02), 4: (92.61, 0.17, 1.32, 0.05, 3.48, 0.03),
            5: (93.13, 0.09, 1.25, 0.00, 3.41, 0.06), 6: (93.25, 0.12, 1.27, 0.02, 3.48, 0.03),
            7: (92.85, 0.18, 1.21, 0.03, 3.37, 0.05), 8: (92.66, 0.13, 1.15, 0.05, 3.29, 0.06),
            9: (93.18, 0.08, 1.08, 0.03, 3.22, 0.04), 10: (92.77, 0.16, 1.01, 0.04, 3.10, 0.02)})}),
    "CelebA (smiling; young), ResNet-50 → ResNet-18": _table2({
        TEACHER: (93.09, 0.08, 4.69, 0.06, 9.41, 0.11), NDS: (92.03, 0.03, 6.11, 0.05, 10.60, 0.08), **_ds_rows({
            1: (92.12, 0.06, 6.02, 0.11, 9.97, 0.08), 2: (92.14, 0.11, 5.67, 0.08, 9.75, 0.09),
            3: (92.53, 0.13, 5.45, 0.05, 9.63, 0.06), 4: (92.17, 0.10, 5.36, 0.02, 9.38, 0.03),
            5: (92.29, 0.05, 5.39, 0.04, 9.30, 0.05), 6: (92.26, 0.08, 5.30, 0.01, 9.38, 0.07),
            7: (92.12, 0.08, 5.26, 0.05, 9.17, 0.10), 8: (92.66, 0.12, 5.22, 0.02, 9.05, 0.04),
            9: (93.18, 0.15, 5.14, 0.04, 9.01, 0.08), 10: (92.57, 0.11, 4.98, 0.03, 8.86, 0.04)})}),
}
TRIFEATURE_TABLE2 = TABLE2["Trifeature (shape; colour), ResNet-20 → LeNet-5"]

# ----------------------------------------------------------------------------- Table 4
TABLE4: dict[str, dict[Population, float]] = {  # individual unfairness (Lipschitz ratio), lower is fairer; no std
    "CelebA": {TEACHER: 0.0407, NDS: 0.124, **_ds_rows({
        1: 0.113, 2: 0.104, 3: 0.0908, 4: 0.0906, 5: 0.0886, 6: 0.0799, 7: 0.0753, 8: 0.0712, 9: 0.0701,
        10: 0.0697})},
    "Trifeature": {TEACHER: 0.016, NDS: 0.0462, **_ds_rows({
        1: 0.0422, 2: 0.0407, 3: 0.0393, 4: 0.0387, 5: 0.0384, 6: 0.0377, 7: 0.0356, 8: 0.0349, 9: 0.0341,
        10: 0.0338})},
    "HateXplain": {TEACHER: 0.0320, NDS: 0.1078, **_ds_rows({
        1: 0.0994, 2: 0.0985, 3: 0.0927, 4: 0.0882, 5: 0.0823, 6: 0.0768, 7: 0.0727, 8: 0.0689, 9: 0.0681,
        10: 0.0654})},
}

# ----------------------------------------------------------------------------- Fig. 5
# HateXplain, BERT-Base → DistilBERT: (gender EOD, gender DPD, race EOD, race DPD) in %, read off
# the authors' vector figure (exact to 2 decimals).
FIG5_HATEXPLAIN: dict[Population, tuple[float, float, float, float]] = {
    TEACHER: (1.63, 1.10, 1.13, 1.64), NDS: (4.79, 2.87, 6.41, 3.16), **_ds_rows({
        1: (4.35, 2.74, 6.18, 3.02), 2: (4.46, 1.84, 5.86, 2.46), 3: (3.88, 1.66, 4.99, 2.19),
        4: (3.51, 1.45, 4.13, 2.03), 5: (2.97, 1.23, 3.78, 1.97), 6: (2.16, 1.16, 3.53, 1.71),
        7: (1.66, 1.09, 3.31, 1.54), 8: (1.49, 0.98, 3.16, 1.21), 9: (1.28, 0.76, 2.99, 1.16),
        10: (1.13, 0.64, 2.64, 1.04), 20: (2.53, 0.91, 3.48, 1.54), 30: (3.38, 1.80, 4.84, 2.23),
        40: (4.49, 2.32, 6.12, 2.96)})}


# ----------------------------------------------------------------------------- CelebA, approximate
# shared/reference/paper.md §6, "CelebA, attribute `Male` (Fig. 4b), and CelebA-Young at very high T":
# read off a low-resolution raster of the blog (±0.15 pp); the exact values are in App. B Table 9
# (not retrieved). A reading given as a range is kept as a range.
@dataclass(frozen=True)
class Approx:
    """A value read off a raster figure: ``low``, or the range ``low``–``high``."""

    low: float
    high: float | None = None

    @property
    def upper(self) -> float:
        return self.low if self.high is None else self.high

    def __str__(self) -> str:
        return "≈" + "–".join(_decimals(v) for v in (self.low, self.high) if v is not None)


def _decimals(value: float) -> str:
    """As the reading was written: 13.0, 13.15, 3.9."""
    text = f"{value:.2f}"
    return text[:-1] if text.endswith("0") else text


@dataclass(frozen=True)
class ApproxFairnessRow:
    """EOD and DPD (%) read off a figure (no accuracy, no std)."""

    eod: Approx
    dpd: Approx


def _approx(rows: dict[Population, tuple[tuple[float, ...], tuple[float, ...]]]) -> dict[Population, ApproxFairnessRow]:
    return {p: ApproxFairnessRow(Approx(*eod), Approx(*dpd)) for p, (eod, dpd) in rows.items()}


_DPD_T1_4 = (13.8, 13.9)
CELEBA_MALE_APPROX: dict[Population, ApproxFairnessRow] = _approx({  # Fig. 4b: (EOD, DPD)
    TEACHER: ((3.9,), (13.7,)), NDS: ((4.3,), (13.8, 13.9)), **_ds_rows({
        1: ((4.3,), _DPD_T1_4), 2: ((3.8, 3.9), _DPD_T1_4), 3: ((3.7, 3.8), _DPD_T1_4), 4: ((3.7, 3.8), _DPD_T1_4),
        5: ((3.7, 3.8), (13.2, 13.3)), 6: ((3.65,), (13.2,)), 7: ((3.65,), (13.1,)), 8: ((3.6,), (13.0, 13.15)),
        9: ((3.4,), (12.9,)), 10: ((2.8, 3.3), (12.2, 12.3)),  # EOD at T=10: the two panels disagree
        20: ((3.6,), (13.1,)), 30: ((3.75,), (13.6,)), 40: ((4.1,), (13.9,))})})
CELEBA_YOUNG_HIGH_T_APPROX: dict[Population, ApproxFairnessRow] = _approx(_ds_rows({  # Fig. 4a: (EOD, DPD)
    20: ((5.1,), (9.3,)), 30: ((5.5,), (9.7,)), 40: ((6.05,), (10.1,))}))
CELEBA_TABLE2 = TABLE2["CelebA (smiling; young), ResNet-50 → ResNet-18"]
# CelebA-Young: Table 2 for T = 1..10, the approximate readings for T = 20, 30, 40
CELEBA_YOUNG: dict[Population, FairnessRow | ApproxFairnessRow] = {**CELEBA_TABLE2, **CELEBA_YOUNG_HIGH_T_APPROX}


@dataclass(frozen=True)
class GroupFairnessRow:
    """EOD and DPD (%) of one population and attribute, read exactly off a vector figure."""

    eod: float
    dpd: float


HATEXPLAIN_GENDER = {p: GroupFairnessRow(v[0], v[1]) for p, v in FIG5_HATEXPLAIN.items()}  # Fig. 5a
HATEXPLAIN_RACE = {p: GroupFairnessRow(v[2], v[3]) for p, v in FIG5_HATEXPLAIN.items()}    # Fig. 5b


def frame(rows: dict[Population, Any]):
    """One of the tables above as pandas: ``population``, ``role``, ``T``, then the row's fields
    (or ``value`` for a table of numbers; an approximate reading as its text, "≈13.8–13.9"),
    teacher and NDS first, then by T."""
    import pandas as pd

    out = []
    for p, row in sorted(rows.items(), key=lambda kv: kv[0].sort_key):
        fields = ({f.name: getattr(row, f.name) for f in dataclasses.fields(row)} if dataclasses.is_dataclass(row)
                  else {"value": row})
        fields = {k: str(v) if isinstance(v, Approx) else v for k, v in fields.items()}
        out.append({"population": p.name, "role": p.role, "T": p.temperature, **fields})
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------- claims
@dataclass(frozen=True)
class Select:
    """Which models a claim looks at: one ``population``, or every distilled student with T in
    ``window`` — all of them pooled (``pick="pooled"``) or those of the highest T (``"highest"``)."""

    population: Population | None = None
    window: tuple[float, float] | None = None
    pick: str = "pooled"

    def __post_init__(self) -> None:
        if (self.population is None) == (self.window is None):
            raise ValueError("Select takes a population or a window of distilled students")
        if self.pick not in ("pooled", "highest"):
            raise ValueError(f"pick must be 'pooled' or 'highest', got {self.pick!r}")


@dataclass(frozen=True)
class AtLeast:
    """The mean of ``metric`` over ``select`` is above ``threshold`` (one-sample t over models)."""

    metric: str
    select: Select
    threshold: float
    attribute: str | None = None


@dataclass(frozen=True)
class Less:
    """``a``'s mean of ``metric`` is below ``b``'s: paired by seed when both are students,
    Welch's test when one side is the teachers. ``shown`` is a metric displayed beside it (the
    raw value of an excess)."""

    metric: str
    a: Select
    b: Select
    attribute: str | None = None
    shown: str | None = None


@dataclass(frozen=True)
class Trend:
    """The distilled students' ``metric`` moves with T over ``window`` in direction ``sign``
    (seed-blocked slope, within-seed permutation p)."""

    metric: str
    window: tuple[float, float]
    sign: int
    attribute: str | None = None
    shown: str | None = None


@dataclass(frozen=True)
class CountTrend:
    """#SC (``count="sc"``), #TC (``"tc"``) or the classes where the DS differs from an
    accuracy-matched NDS (``"beyond_accuracy"``) of the class-bias experiment move with T in ``sign``."""

    count: str
    window: tuple[float, float]
    sign: int


@dataclass(frozen=True)
class AboveChance:
    """A count at the highest class-bias temperature exceeds its seed-permutation null:
    ``count="sc"`` (NDS vs DS) or ``"beyond_accuracy"`` (the accuracy-matched NDS vs DS)."""

    count: str = "sc"


@dataclass(frozen=True)
class Ordered:
    """The means of ``metric`` increase along ``selects`` (e.g. teacher < DS < NDS): every
    neighbouring pair is a :class:`Less` and all must hold (an intersection–union test)."""

    metric: str
    selects: tuple[Select, ...]
    attribute: str | None = None


Test = Union[AtLeast, Less, Trend, CountTrend, AboveChance, Ordered]


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    paper: str
    test: Test
    experiment: str = "main"


def _span(values: list[float]) -> str:
    return f"{min(values):.2f}–{max(values):.2f}"


def _ds_values(table: Mapping[Population, Any], attr: str, window: tuple[float, float]) -> list[Any]:
    return [getattr(row, attr) if attr else row for p, row in sorted(table.items(), key=lambda kv: kv[0].sort_key)
            if p.role == "ds" and window[0] <= p.temperature <= window[1]]


def _value(value: float | Approx) -> str:
    """A table value in %: exact to 2 decimals, or the approximate reading."""
    return str(value) if isinstance(value, Approx) else f"{value:.2f}"


def _upper(value: float | Approx) -> float:
    return value.upper if isinstance(value, Approx) else value


def _t(window: tuple[float, float]) -> str:
    return f"T = {window[0]:g}..{window[1]:g}"


def _count_span(table: Mapping[Population, ClassBiasRow], count: str) -> str:
    """#SC or #TC at the first and last T of the class-bias window, and an extreme beyond both ends."""
    values = _ds_values(table, count, CLASS_BIAS_WINDOW)
    ends = (values[0], values[-1])
    extreme = (f" (min {min(values)})" if min(values) < min(ends) else
               f" (max {max(values)})" if max(values) > max(ends) else "")
    return f"{ends[0]}→{ends[1]}{extreme}"


_D = Population.ds
DS_POOLED = Select(window=FAIRNESS_WINDOW, pick="pooled")
DS_HIGHEST = Select(window=FAIRNESS_WINDOW, pick="highest")
DS_VERY_HIGH = Select(window=VERY_HIGH_WINDOW, pick="highest")
DS_CLASS_BIAS = Select(window=CLASS_BIAS_WINDOW, pick="pooled")
DS_AT_1 = Select(Population.ds(1))
_TOP, _VERY_TOP = _D(FAIRNESS_WINDOW[1]), _D(VERY_HIGH_WINDOW[1])


# ----------------------------------------------------------------------------- claim builders
def _accuracy_paper(table: Mapping[Population, Any], window: tuple[float, float]) -> str:
    return f"NDS {table[NDS].accuracy:.2f} vs DS {_span(_ds_values(table, 'accuracy', window))}"


def _more_accurate(paper: str, window: tuple[float, float], experiment: str = "main") -> Claim:
    return Claim("ds_more_accurate", f"Distilled students are more accurate than the NDS ({_t(window)})", paper,
                 Less("accuracy", Select(NDS), Select(window=window)), experiment)


def _accuracy_claims(table: Mapping[Population, FairnessRow]) -> tuple[Claim, ...]:
    """DS more accurate than the NDS over T = 1..10, and already at T = 1 (Table 2)."""
    return (_more_accurate(_accuracy_paper(table, FAIRNESS_WINDOW), FAIRNESS_WINDOW),
            Claim("ds1_more_accurate", "Already at T = 1 the DS is more accurate than the NDS",
                  f"NDS {table[NDS].accuracy:.2f} vs DS@T=1 {table[_D(1)].accuracy:.2f}",
                  Less("accuracy", Select(NDS), DS_AT_1)))


def _count_claims(scope: str, sc_paper: str, tc_paper: str) -> tuple[Claim, ...]:
    """#SC rises, above chance and beyond accuracy, #TC falls: on experiment ``class_bias``."""
    return (
        Claim("sc_rises", f"#SC rises with T ({scope})", sc_paper, CountTrend("sc", CLASS_BIAS_WINDOW, +1),
              experiment="class_bias"),
        Claim("sc_above_chance", "#SC exceeds chance (NDS vs DS at the highest T, seed-permutation null)",
              "not tested in the paper", AboveChance("sc"), experiment="class_bias"),
        Claim("sc_beyond_accuracy", "DS differs from an accuracy-matched NDS in more classes than chance (highest T)",
              "not tested in the paper", AboveChance("beyond_accuracy"), experiment="class_bias"),
        Claim("beyond_accuracy_rises", "The classes where the DS differs from an accuracy-matched NDS rise with T",
              "not tested in the paper", CountTrend("beyond_accuracy", CLASS_BIAS_WINDOW, +1),
              experiment="class_bias"),
        Claim("tc_falls", "#TC falls with T", tc_paper, CountTrend("tc", CLASS_BIAS_WINDOW, -1),
              experiment="class_bias"),
    )


TINYIMAGENET_NOT_RETRIEVED = "Table 6 not retrieved"


def _class_bias_claims(name: str, table: Mapping[Population, ClassBiasRow] | None) -> tuple[Claim, ...]:
    """A class-bias data set's claims against its Table 1 row (None: the paper's table was not
    retrieved), all on experiment ``class_bias`` (in these profiles the same grid as ``main``)."""
    if table is None:
        acc = sc = tc = TINYIMAGENET_NOT_RETRIEVED  # its text says only that many classes are affected
    else:
        t = [p.temperature for p in sorted(table, key=lambda p: p.sort_key)
             if p.role == "ds" and CLASS_BIAS_WINDOW[0] <= p.temperature <= CLASS_BIAS_WINDOW[1]]
        ends = f"T = {t[0]:g}→{t[-1]:g}: "
        acc = _accuracy_paper(table, CLASS_BIAS_WINDOW)
        sc, tc = ends + _count_span(table, "sc"), ends + _count_span(table, "tc")
    return (_more_accurate(acc, CLASS_BIAS_WINDOW, "class_bias"),
            *_count_claims(f"{name}, {_t(CLASS_BIAS_WINDOW)}", sc, tc))


def _group_fairness_claims(attribute: str, name: str, table: Mapping[Population, Any], *, suffix: str = "",
                           reverses: str | None = None, approximate: bool = False) -> tuple[Claim, ...]:
    """The group-fairness claims on ``attribute`` (written ``name``) against ``table`` (EOD/DPD in %
    per population). ``suffix`` makes the ids distinct where a set has several attributes, and
    then every statement names its attribute; ``reverses``: the very-high-T claim's paper column,
    else the table's own values at T = 10 and 40. ``approximate`` (values read off a raster
    figure): no T = 1 claim (the figure does not resolve DS@T=1 from the NDS), and the pooled
    claim's paper column shows the DS from T = 1 to the top of the window."""
    def v(p: Population, metric: str) -> str:
        return _value(getattr(table[p], metric))

    named = f" ({name})" if suffix else ""
    highest_eod = max(_ds_values(table, "eod", FAIRNESS_WINDOW), key=_upper)
    if reverses is None:
        reverses = (f"EOD {v(_TOP, 'eod')} (T={_TOP.temperature:g}) → {v(_VERY_TOP, 'eod')} "
                    f"(T={_VERY_TOP.temperature:g}); DPD {v(_TOP, 'dpd')} → {v(_VERY_TOP, 'dpd')}")
    return (
        Claim("eod_falls" + suffix, f"DS EOD ({name}) falls as T rises ({_t(TREND_WINDOW)}; judged on the excess over "
              "the zero-disparity reference)", f"{v(_D(TREND_WINDOW[0]), 'eod')}→{v(_TOP, 'eod')} (%)",
              Trend("eod_excess", TREND_WINDOW, -1, attribute, shown="eod")),
        Claim("dpd_falls" + suffix, f"DS DPD ({name}) falls as T rises ({_t(TREND_WINDOW)}; excess over the reference)",
              f"{v(_D(TREND_WINDOW[0]), 'dpd')}→{v(_TOP, 'dpd')} (%)",
              Trend("dpd_excess", TREND_WINDOW, -1, attribute, shown="dpd")),
        Claim("ds_fairer_than_nds" + suffix, f"DS fairer than NDS (EOD excess, {name}, {_t(FAIRNESS_WINDOW)})",
              f"NDS {v(NDS, 'eod')} vs DS {v(_D(1), 'eod')} (T=1) → {v(_TOP, 'eod')} (T={_TOP.temperature:g})"
              if approximate else f"NDS {v(NDS, 'eod')} vs DS ≤ {_value(highest_eod)}",
              Less("eod_excess", DS_POOLED, Select(NDS), attribute, shown="eod")),
        *(() if approximate else (
            Claim("ds1_fairer_than_nds" + suffix, f"Already at T = 1 the DS is fairer than the NDS (EOD excess, {name})",
                  f"NDS {v(NDS, 'eod')} vs DS@T=1 {v(_D(1), 'eod')}",
                  Less("eod_excess", DS_AT_1, Select(NDS), attribute, shown="eod")),)),
        Claim("ds_dpd_below_teacher" + suffix, f"DS DPD{named} below the teacher's at high T (the highest T ≤ "
              f"{FAIRNESS_WINDOW[1]:g}; excess over the reference)",
              f"{v(_TOP, 'dpd')} (T={_TOP.temperature:g}) < {v(TEACHER, 'dpd')}",
              Less("dpd_excess", DS_HIGHEST, Select(TEACHER), attribute, shown="dpd")),
        Claim("very_high_t_reverses" + suffix, f"Very high T reverses the EOD trend ({name + '; ' if suffix else ''}"
              f"EOD excess at the highest T ≤ {FAIRNESS_WINDOW[1]:g} < at the highest T)", reverses,
              Less("eod_excess", DS_HIGHEST, DS_VERY_HIGH, attribute, shown="eod")),
    )


def _individual_claims(table: Mapping[Population, float], attribute: str, *, pairs: str = "",
                       formats: tuple[str, str] = ("g", "g")) -> tuple[Claim, ...]:
    """Lipschitz ratio falls with T, and teacher < DS < NDS (Table 4) on ``attribute``'s pairs
    (described by ``pairs``); ``formats``: how the trend's and the order's paper values are printed."""
    trend, order = formats
    ds = _ds_values(table, "", FAIRNESS_WINDOW)
    lo = _D(TREND_WINDOW[0])
    return (
        Claim("lipschitz_falls", f"Individual unfairness (Lipschitz ratio{', ' + pairs if pairs else ''}) falls as T "
              f"rises ({_t(TREND_WINDOW)})", f"{table[lo]:{trend}} (T={lo.temperature:g}) → {table[_TOP]:{trend}} "
              f"(T={_TOP.temperature:g})", Trend("lipschitz", TREND_WINDOW, -1, attribute)),
        Claim("individual_order", f"Teacher < DS < NDS on individual fairness ({pairs + ', ' if pairs else ''}"
              f"{_t(FAIRNESS_WINDOW)})",
              f"{table[TEACHER]:{order}} < {min(ds):{order}}–{max(ds):{order}} < {table[NDS]:{order}}",
              Ordered("lipschitz", (Select(TEACHER), DS_POOLED, Select(NDS)), attribute)),
    )


# ----------------------------------------------------------------------------- claim sets
_T2 = TRIFEATURE_TABLE2
_CIFAR, _IMAGENET = TABLE1["CIFAR-100, ResNet-56 → ResNet-20"], TABLE1["ImageNet, ResNet-50 → ResNet-18"]
_FIG5_EOD = {p: row[0] for p, row in FIG5_HATEXPLAIN.items()}  # HateXplain gender EOD

CLAIMS: tuple[Claim, ...] = (  # Trifeature (quick and paper profiles); the README's claims table
    Claim("teacher_accuracy", "Teacher (ResNet-20) reaches ~100 % on Trifeature shape (above 99 %)",
          f"{_T2[TEACHER].accuracy:.2f} ± {_T2[TEACHER].accuracy_std:.2f}",
          AtLeast("accuracy", Select(TEACHER), 99.0)),
    *_accuracy_claims(_T2),
    *_count_claims("100-class Trifeature shape×colour",
                   f"CIFAR-100 {_count_span(_CIFAR, 'sc')}, ImageNet {_count_span(_IMAGENET, 'sc')} (T = 2→10)",
                   f"CIFAR-100 {_count_span(_CIFAR, 'tc')}, ImageNet {_count_span(_IMAGENET, 'tc')}"),
    *_group_fairness_claims("color", "colour", _T2, reverses=f"HateXplain EOD {_FIG5_EOD[_TOP]:.2f} (T=10) → "
                            f"{_FIG5_EOD[_VERY_TOP]:.2f} (T=40)"),
    *_individual_claims(TABLE4["Trifeature"], "color", formats=(".4f", ".3f")),
)

CLAIM_SETS: dict[str, tuple[Claim, ...]] = {
    "trifeature": CLAIMS,
    "cifar100": _class_bias_claims("CIFAR-100", _CIFAR),
    "tinyimagenet": _class_bias_claims("Tiny ImageNet", None),
    "imagenet": _class_bias_claims("ImageNet", _IMAGENET),
    "celeba": (*_accuracy_claims(CELEBA_TABLE2),
               *_group_fairness_claims("young", "Young", CELEBA_YOUNG, suffix="_young"),
               *_group_fairness_claims("male", "Male", CELEBA_MALE_APPROX, suffix="_male", approximate=True),
               *_individual_claims(TABLE4["CelebA"], "nn", pairs="nearest-neighbour pairs")),
    # Table 3 (HateXplain accuracies) was not retrieved; Fig. 5 gives EOD and DPD for gender and race
    "hatexplain": (_more_accurate("Table 3 not retrieved", FAIRNESS_WINDOW),
                   *_group_fairness_claims("gender", "gender", HATEXPLAIN_GENDER, suffix="_gender"),
                   *_group_fairness_claims("race", "race", HATEXPLAIN_RACE, suffix="_race")),
}

# The report's header: each data set's setup in the paper (the profiles' architectures).
DESCRIPTIONS: dict[str, str] = {
    "trifeature": "Trifeature (generated), ResNet-20 teacher → LeNet-5 students",
    "cifar100": "CIFAR-100, ResNet-56 teacher → ResNet-20 students",
    "tinyimagenet": "Tiny ImageNet, ResNet-50 teacher → ResNet-18 students",
    "imagenet": "ImageNet, ResNet-50 teacher → ResNet-18 students",
    "celeba": "CelebA, ResNet-50 teacher → ResNet-18 students",
    "hatexplain": "HateXplain, BERT-Base teacher → DistilBERT students",
}


def claims_for(dataset: str) -> tuple[Claim, ...]:
    """The claims tested on a run of ``dataset`` (a profile's ``main.dataset``)."""
    try:
        return CLAIM_SETS[dataset]
    except (KeyError, TypeError):
        raise ValueError(f"no claim set for data set {dataset!r}; known: {', '.join(CLAIM_SETS)}") from None


# ----------------------------------------------------------------------------- per data set
_ACCURACY_TABLES = {"trifeature": TRIFEATURE_TABLE2, "celeba": CELEBA_TABLE2, "cifar100": _CIFAR,
                    "imagenet": _IMAGENET}
_FAIRNESS_TABLES = {("trifeature", "color"): TRIFEATURE_TABLE2, ("celeba", "young"): CELEBA_YOUNG,
                    ("celeba", "male"): CELEBA_MALE_APPROX, ("hatexplain", "gender"): HATEXPLAIN_GENDER,
                    ("hatexplain", "race"): HATEXPLAIN_RACE}
_LIPSCHITZ_TABLES = {name.lower(): table for name, table in TABLE4.items()}


def accuracy_table(dataset: str) -> dict[Population, Any] | None:
    """The paper's rows (with ``accuracy`` and ``accuracy_std``) for the architectures our profile
    of ``dataset`` uses: Table 2 (Trifeature, CelebA) or Table 1 (CIFAR-100, ImageNet); None where
    the paper's table was not retrievable (Tiny ImageNet's Table 6) or there is none."""
    return _ACCURACY_TABLES.get(dataset)


def fairness_table(dataset: str, attribute: str) -> dict[Population, Any] | None:
    """The paper's rows for ``dataset`` and ``attribute``, or None: Table 2 (accuracy, EOD, DPD) for
    Trifeature colour and CelebA young (with approximate T = 20..40 from Fig. 4a), approximate EOD
    and DPD read off Fig. 4b for CelebA male (:class:`Approx`)."""
    return _FAIRNESS_TABLES.get((dataset, attribute))


def lipschitz_table(dataset: str) -> dict[Population, float] | None:
    """The paper's Table 4 column (Lipschitz ratio per population) for ``dataset``, or None."""
    return _LIPSCHITZ_TABLES.get(dataset)
