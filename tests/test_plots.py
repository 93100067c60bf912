"""Every figure function draws from real inputs and saves PNG and SVG."""

import warnings

import numpy as np
import pytest

from kdfair_utils import plots
from kdfair_utils.class_bias import class_bias_test
from kdfair_utils.results import MetricSummary, Population, PopulationValues


@pytest.fixture(autouse=True)
def close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def test_summary_vs_temperature_draws_the_ds_band_and_references(tmp_path):
    pops = (PopulationValues(Population.teacher(), (0, 1), (3.0, 3.5)),
            PopulationValues(Population.nds(), (0, 1), (9.0, 8.0)),
            *(PopulationValues(Population.ds(t), (0, 1), (5.0 - t / 10, 4.0)) for t in (1, 2, 4, 40)))
    fig = plots.summary_vs_temperature(MetricSummary("main", "shape", "test", "eod", "color", "", pops))
    ax = fig.axes[0]
    assert list(ax.lines[0].get_xdata()) == [1.0, 2.0, 4.0, 40.0] and ax.get_xscale() == "log"
    assert [line.get_label() for line in ax.lines[1:]] == ["teacher", "NDS"]
    assert ax.lines[1].get_ydata()[0] == 3.25 and ax.get_ylabel() == "eod (%), color"
    plots.save_figure(fig, tmp_path / "fig")
    assert (tmp_path / "fig.png").stat().st_size > 0 and (tmp_path / "fig.svg").stat().st_size > 0


def test_other_figures_draw(tiny_lesson):
    result = tiny_lesson.grid()
    data = result.dataset
    assert plots.trifeature_gallery(data, rows="shape", cols="color").axes
    assert plots.soft_targets_plot(result.logits(Population.teacher())[0][0], [1, 4], data.class_names).axes
    y = data.test.labels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny models: some classes are constant
        test = class_bias_test(y, result.predictions(Population.nds()), result.predictions(Population.ds(4)),
                               normalization="difference")
    assert len(plots.class_effect_plot(test.table).axes[0].get_yticklabels()) == data.num_classes
    mat = np.array([[0, 2], [1, 0]])
    assert plots.disagreement_heatmap(mat, ["a", "b"]).axes
    with pytest.raises(ValueError, match="unknown attribute 'size'"):
        plots.trifeature_gallery(data, rows="shape", cols="size")
