"""groupcam.compare on fake explainers: layouts, timing, agreement measures, table, figure."""

from __future__ import annotations

import numpy as np
import pytest
from _support.fake_backend import FakeNumpyBackend
from PIL import Image

from groupcam.compare import Agreement, Comparison, WayRun, compare
from groupcam_core.agreement import average_ranks, spearman, top_fraction_iou
from groupcam_core.errors import BackendError, ConfigError, InputError
from groupcam_core.kit import ExplainerBase

SIZE = 16  # the fake model pools by 4


class FakeExplainer(ExplainerBase):
    """An explainer around a fake backend that records what it was given."""

    def __init__(self, backend: FakeNumpyBackend, groups: int = 4) -> None:
        super().__init__(backend, groups, "paper", None, {})
        self.backend = backend
        self.seen: list[tuple[tuple[int, ...], object]] = []

    @property
    def input_layout(self):
        return self.backend.input_layout

    def _backend_for(self, x):
        return self.backend

    def explain(self, x, targets=None):
        self.seen.append((tuple(np.shape(x)), targets))
        return super().explain(x, targets)


def _images(batch: int = 3) -> np.ndarray:
    """Channels-last images with one bright blob each."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    x = rng.normal(scale=0.5, size=(batch, SIZE, SIZE, 3))
    for b in range(batch):
        cy, cx = rng.uniform(3, SIZE - 3, size=2)
        x[b] += 2 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 6.0)[..., None]
    return x


def _ways(seed_of_third: int = 1) -> dict[str, FakeExplainer]:
    return {
        "first": FakeExplainer(FakeNumpyBackend(layout="channels_first")),
        "last": FakeExplainer(FakeNumpyBackend(layout="channels_last")),
        "other": FakeExplainer(FakeNumpyBackend(layout="channels_last", seed=seed_of_third)),
    }


# -- the measures -----------------------------------------------------------------------


def test_average_ranks_and_spearman_equal_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    for _ in range(5):
        a = np.round(rng.uniform(size=(12, 9)) * 4) / 4  # many ties
        b = np.round((a + rng.normal(scale=0.3, size=a.shape)) * 3) / 3
        np.testing.assert_allclose(average_ranks(a), stats.rankdata(a.ravel()))
        assert spearman(a, b) == pytest.approx(stats.spearmanr(a.ravel(), b.ravel())[0])
    assert average_ranks([]).shape == (0,)


def test_spearman_of_constant_and_identical_maps() -> None:
    flat = np.zeros((4, 4))
    ramp = np.arange(16.0).reshape(4, 4)
    assert spearman(flat, flat) == 1.0
    assert spearman(flat, ramp) == 0.0
    assert spearman(ramp, ramp) == 1.0
    assert spearman(ramp, -ramp) == pytest.approx(-1.0)
    with pytest.raises(InputError, match="pixels"):
        spearman(ramp, ramp[:2])


def test_top_fraction_iou() -> None:
    a = np.arange(20.0)  # top 4 of 20 (20%): pixels 16..19
    b = a.copy()
    b[[19, 18]] = -1  # top 4 of b: 17, 16, 15, 14
    assert top_fraction_iou(a, a, 0.2) == 1.0
    assert top_fraction_iou(a, b, 0.2) == pytest.approx(2 / 6)
    assert top_fraction_iou(a, -a, 0.2) == 0.0
    assert top_fraction_iou(np.zeros(10), np.zeros(10)) == 1.0  # ties: the same pixels
    assert top_fraction_iou(a, b, 1e-6) == 0.0  # one pixel: 19 against 17
    with pytest.raises(ConfigError, match="fraction"):
        top_fraction_iou(a, a, 0.0)
    with pytest.raises(InputError, match="pixels"):
        top_fraction_iou(a, a[:3])


# -- compare ----------------------------------------------------------------------------


def test_each_explainer_gets_the_images_in_its_layout() -> None:
    ways = _ways()
    images = _images()
    result = compare(ways, images, layout="channels_last", targets=[0, 1, 2])
    assert ways["first"].seen == [((3, 3, SIZE, SIZE), [0, 1, 2])]
    assert ways["last"].seen == [((3, SIZE, SIZE, 3), [0, 1, 2])]
    assert result.names == ["first", "last", "other"]
    assert result.reference == "first"
    assert [run.layout for run in result.runs.values()] == [
        "channels_first",
        "channels_last",
        "channels_last",
    ]
    # The same model in both layouts gives the same maps.
    np.testing.assert_allclose(result.maps["last"], result.maps["first"], atol=1e-6)
    same = result.agreement("last")
    assert same.max_abs_difference.shape == (3,)
    assert same.max_abs_difference.max() < 1e-6
    assert same.spearman.min() > 0.999999
    assert same.top_iou.min() == 1.0
    assert same.same_target.all()
    assert same.probability_difference.max() < 1e-7


def test_runs_record_time_passes_and_targets() -> None:
    result = compare(_ways(), np.transpose(_images(), (0, 3, 1, 2)), layout="channels_first")
    run = result.runs["other"]
    assert isinstance(run, WayRun)
    assert run.seconds > 0
    assert run.seconds_per_image == pytest.approx(run.seconds / 3)
    np.testing.assert_array_equal(run.forward_passes, run.explanation.forward_passes)
    assert run.saliency.shape == (3, SIZE, SIZE)
    assert [(a.reference, a.way) for a in result.agreements] == [
        ("first", "last"),
        ("first", "other"),
    ]


def test_another_model_disagrees_and_any_pair_can_be_measured() -> None:
    result = compare(_ways(seed_of_third=5), _images(), reference="last")
    assert result.reference == "last"
    assert [a.way for a in result.agreements] == ["first", "other"]
    other = result.agreement("other")
    assert other.max_abs_difference.max() > 0.05
    assert other.spearman.min() < 0.99
    pair = result.agreement("other", reference="first")
    assert (pair.reference, pair.way) == ("first", "other")
    worst = pair.summary()
    assert worst["max_abs_difference"] == pytest.approx(pair.max_abs_difference.max())
    assert worst["min_spearman"] == pytest.approx(pair.spearman.min())
    assert 0.0 <= worst["same_targets"] <= 1.0
    with pytest.raises(KeyError, match="no way named 'nope'"):
        result.agreement("nope")


def test_warmup_explains_twice_before_timing() -> None:
    ways = {"a": FakeExplainer(FakeNumpyBackend())}
    result = compare(ways, _images(2), warmup=True)
    assert len(ways["a"].seen) == 2
    assert result.agreements == ()


def test_markdown_table() -> None:
    table = compare(_ways(), _images()).to_markdown()
    lines = table.strip().splitlines()
    assert len(lines) == 5
    assert lines[0].startswith("| way | layout | s / image | passes / image | max abs diff")
    assert "min IoU top 15%" in lines[0]
    assert lines[2].startswith("| first (reference) | channels_first |")
    assert lines[2].endswith("| | | | | | |")
    cells = [cell.strip() for cell in lines[3].split("|")[1:-1]]
    assert cells[0] == "last"
    assert cells[3] == "6"  # 4 groups + 2
    assert float(cells[4]) < 1e-6
    assert cells[6] == "1" or cells[6].startswith("1 - ")
    assert cells[7] == "1"
    assert cells[8] == "3/3"
    other = [cell.strip() for cell in lines[4].split("|")[1:-1]]
    assert float(other[6]) < 0.9  # a correlation far from 1 gets 4 decimals
    assert len(other[6].split(".")[-1]) == 4


def test_from_runs_checks_shapes_and_reference() -> None:
    result = compare(_ways(), _images())
    runs = list(result.runs.values())
    again = Comparison.from_runs(runs, reference="other")
    assert again.reference == "other"
    small = compare({"x": FakeExplainer(FakeNumpyBackend())}, _images(1)).runs["x"]
    with pytest.raises(InputError, match="one shape"):
        Agreement.between(runs[0], small)
    with pytest.raises(ConfigError, match="reference 'z'"):
        Comparison.from_runs(runs, reference="z")
    with pytest.raises(ConfigError, match="at least one way"):
        Comparison.from_runs([])


def test_bad_arguments() -> None:
    ways = _ways()
    with pytest.raises(ConfigError, match="non-empty mapping"):
        compare({}, _images())
    with pytest.raises(ConfigError, match="layout"):
        compare(ways, _images(), layout="nhwc")
    with pytest.raises(ConfigError, match="reference"):
        compare(ways, _images(), reference="torch")
    with pytest.raises(InputError, match="4-D"):
        compare(ways, _images()[0])

    class Silent(ExplainerBase):
        def __init__(self) -> None:
            super().__init__(object(), 4, "paper", None, {})

    with pytest.raises(BackendError, match="input_layout"):
        compare({"silent": Silent()}, _images())

    def bare_model(x):  # a model, not an explainer of it
        return x

    with pytest.raises(ConfigError, match=r"explainers\['model'\] is a function, not a groupcam"):
        compare({"model": bare_model}, _images())


@pytest.mark.parametrize("with_photos", [False, True])
def test_figure(tmp_path, with_photos) -> None:
    result = compare(_ways(), _images())
    photos = (np.random.default_rng(0).uniform(size=(3, SIZE, SIZE, 3)) * 255).astype(np.uint8)
    path = result.save_figure(
        tmp_path / "figure.png",
        photos=photos if with_photos else None,
        images=[0, 2],
        titles=["zero", "two"],
    )
    picture = np.asarray(Image.open(path).convert("RGB"))
    assert picture.shape[0] > 200
    assert picture.std() > 20
    small = result.save_figure(tmp_path / "small.png", images=[0], colors=64, over_photos=False)
    with Image.open(small) as picture:
        assert picture.mode == "P"
        assert len(picture.getcolors()) <= 64
    with pytest.raises(ConfigError, match="colors"):
        result.save_figure(tmp_path / "x.png", colors=1)
    with pytest.raises(ConfigError, match="titles"):
        result.save_figure(tmp_path / "x.png", titles=["one"])
    with pytest.raises(ConfigError, match="images is empty"):
        result.save_figure(tmp_path / "x.png", images=[])
