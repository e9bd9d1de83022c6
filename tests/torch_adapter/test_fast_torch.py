"""``GroupCAM(fast=True)`` for torch: what runs in which precision, and what is left as it was."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from _support.fast import force_fast_mode
from _support.torch_models import tiny_cnn
from torch import nn

import groupcam_core.fast as fast_module
import groupcam_core.kit.explainer as explainer_module
from groupcam_core.fast import EXACT, FastMode
from groupcam_torch import GroupCAM
from groupcam_torch.fast import fast_mode

BFLOAT16 = FastMode("bfloat16", True, True, "forced by the test")


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ranks_a = np.argsort(np.argsort(a.ravel(), kind="stable"), kind="stable").astype(np.float64)
    ranks_b = np.argsort(np.argsort(b.ravel(), kind="stable"), kind="stable").astype(np.float64)
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def _forced(cam: GroupCAM, mode: FastMode = BFLOAT16) -> GroupCAM:
    return force_fast_mode(cam, mode)  # whatever this CPU's own mode is


class _Twice(nn.Module):
    """``act`` runs twice: after ``a`` and after ``b``."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.b(self.act(self.a(x)))
        return self.fc(self.act(x).mean((2, 3)))


def _act_called_twice() -> nn.Module:
    torch.manual_seed(0)
    return _Twice().eval()


def _record_dtypes(model: nn.Module) -> tuple[list[tuple[str, torch.dtype, bool]], list]:
    """Hooks recording (module kind, input dtype, grad enabled) of each conv and linear call."""
    seen: list[tuple[str, torch.dtype, bool]] = []
    handles = [
        module.register_forward_hook(
            lambda m, inputs, out: seen.append(
                (type(m).__name__, out.dtype, torch.is_grad_enabled())
            )
        )
        for module in model.modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
    ]
    return seen, handles


def test_gradient_pass_and_head_stay_float32_the_body_runs_in_bfloat16(blob_net) -> None:
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    cam = _forced(GroupCAM(blob_net, target_layer="6", groups=8, fast=True))
    seen, handles = _record_dtypes(blob_net)
    try:
        result = cam.explain(images)
    finally:
        for handle in handles:
            handle.remove()
    # The first model run is the gradient pass: float32 throughout.
    first = seen[:4]
    assert [dtype for _, dtype, _ in first] == [torch.float32] * 4
    masked = seen[4:]
    convolutions = {dtype for kind, dtype, _ in masked if kind == "Conv2d"}
    heads = {dtype for kind, dtype, _ in masked if kind == "Linear"}
    assert convolutions == {torch.bfloat16}
    assert heads == {torch.float32}  # after the target layer: float32
    assert not any(grad for _, _, grad in masked)
    assert result.saliency.dtype == np.float32
    assert result.group_scores.dtype == np.float32


def test_the_model_and_torch_state_are_left_as_they_were(blob_net) -> None:
    model = tiny_cnn()
    before = {name: (t.clone(), t.stride()) for name, t in model.state_dict().items()}
    cam = _forced(GroupCAM(model, groups=4, fast=True))
    cam(torch.randn(1, 3, 24, 24))
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name][0])
        assert tensor.stride() == before[name][1]  # no channels-last weights left behind
    assert not torch.is_autocast_enabled("cpu")
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_a_head_that_reads_a_tensor_from_below_the_layer_falls_back_to_autocast() -> None:
    class SkipHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1)
            self.body = nn.Conv2d(8, 8, 3, padding=1)
            self.act = nn.ReLU()
            self.fc = nn.Linear(16, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            early = self.stem(x)  # bfloat16 under autocast, read again after the layer
            late = self.act(self.body(early))
            pooled = torch.cat([late.mean((2, 3)), early.mean((2, 3))], dim=1)
            return self.fc(pooled)

    torch.manual_seed(0)
    model = SkipHead().eval()
    images = torch.randn(2, 3, 16, 16)
    exact = GroupCAM(model, target_layer="act", groups=4).explain(images)
    fast = _forced(GroupCAM(model, target_layer="act", groups=4, fast=True)).explain(
        images, exact.targets
    )
    assert np.isfinite(fast.saliency).all()
    assert fast.saliency.shape == exact.saliency.shape


def test_a_layer_called_twice_switches_to_float32_after_its_last_call() -> None:
    model = _act_called_twice()
    cam = _forced(GroupCAM(model, target_layer="act", groups=4, fast=True))
    seen, handles = _record_dtypes(model)
    try:
        cam(torch.randn(1, 3, 16, 16))
    finally:
        for handle in handles:
            handle.remove()
    masked = seen[3:]
    assert {dtype for kind, dtype, _ in masked if kind == "Conv2d"} == {torch.bfloat16}
    assert {dtype for kind, dtype, _ in masked if kind == "Linear"} == {torch.float32}


def test_fast_mode_follows_the_device_and_the_model_dtype() -> None:
    cpu = fast_mode(torch.device("cpu"))
    assert cpu.dtype in (None, "bfloat16")
    assert (cpu.dtype is None) == (not cpu.active)
    half = fast_mode(torch.device("cpu"), torch.bfloat16)
    assert half.dtype is None
    assert "bfloat16" in half.reason
    assert fast_mode(torch.device("meta")).dtype is None
    cam = GroupCAM(tiny_cnn(), fast=True)
    assert cam.fast_mode == cpu
    assert GroupCAM(tiny_cnn()).fast_mode == EXACT
    assert "fast=True" in repr(cam)


@pytest.mark.slow
def test_efficientnet_fast_maps_rank_pixels_as_the_exact_maps() -> None:
    """The measured claim of docs/benchmarks.md, on the real network and photos."""
    from groupcam.samples import load_sample_photos
    from groupcam.zoo.lite0_torch import efficientnet_lite0, photos_to_batch

    model = efficientnet_lite0()
    batch = photos_to_batch(list(load_sample_photos().values()))
    exact = GroupCAM(model).explain(batch)
    fast = _forced(GroupCAM(model, fast=True)).explain(batch)
    np.testing.assert_array_equal(fast.targets, exact.targets)
    for found, expected in zip(fast.saliency, exact.saliency, strict=True):
        assert _spearman(found, expected) >= 0.99


def test_a_layer_called_twice_gets_its_graph_from_the_last_call_on_later_explanations() -> None:
    """The second explanation knows the layer runs twice: no graph between the two calls."""

    model = _act_called_twice()
    images = torch.randn(2, 3, 16, 16)
    graph_at_b: list[bool] = []
    model.b.register_forward_hook(lambda m, i, o: graph_at_b.append(o.requires_grad))
    cam = GroupCAM(model, target_layer="act", groups=4)
    first = cam.explain(images)
    first_graph, graph_at_b[:] = graph_at_b[0], []
    second = cam.explain(images)
    assert first_graph is True  # first explanation: the graph starts at act's first call
    assert graph_at_b[0] is False  # then at its last call: b is outside the graph
    assert cam._call_counts == {"act": 2}
    np.testing.assert_array_equal(first.saliency, second.saliency)
    np.testing.assert_array_equal(first.group_scores, second.group_scores)


def test_fast_mode_is_measured_on_the_model_once_per_input_shape(monkeypatch) -> None:
    """fast=True keeps bfloat16 only if this model runs faster in it; measured once per shape."""
    model = tiny_cnn()
    cam = GroupCAM(model, groups=4, fast=True)
    cam._fast_mode = lambda x=None: BFLOAT16
    measured: list[FastMode] = []
    real = fast_module.faster_mode

    def recording(candidate, run, *args, **kwargs):
        found = real(candidate, run, *args, **kwargs)
        measured.append(found)
        return found

    monkeypatch.setattr(explainer_module, "faster_mode", recording)
    images = torch.randn(2, 3, 24, 24)
    first = cam.explain(images)
    cam.explain(images)
    assert len(measured) == 1  # the same shape again: not measured again
    cam.explain(torch.randn(1, 3, 24, 24))
    assert len(measured) == 2
    assert cam.fast_mode == measured[-1]
    assert "x the exact passes here" in cam.fast_mode.reason or (
        "measured no faster" in cam.fast_mode.reason and not cam.fast_mode.active
    )
    assert np.isfinite(first.saliency).all()
    exact = GroupCAM(model, groups=4).explain(images)
    np.testing.assert_array_equal(exact.targets, first.targets)


def _first_conv_dtypes(model: nn.Module) -> tuple[list[torch.dtype], Any]:
    """The output dtype of the model's first convolution at each call (bfloat16 under
    autocast), and the hook's handle."""
    seen: list[torch.dtype] = []
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    handle = conv.register_forward_hook(lambda module, inputs, out: seen.append(out.dtype))
    return seen, handle


def test_each_timed_run_runs_its_mode_and_an_exact_choice_runs_exact(monkeypatch) -> None:
    model = tiny_cnn()
    images = torch.randn(2, 3, 24, 24)
    cam = GroupCAM(model, groups=4, fast=True)
    cam._fast_mode = lambda x=None: BFLOAT16
    seen, handle = _first_conv_dtypes(model)
    timed: dict[str, set[torch.dtype]] = {}

    def choose_exact(candidate, run, *args, **kwargs):
        for mode in (EXACT, candidate, EXACT):
            start = len(seen)
            run(mode)
            timed.setdefault(str(mode.dtype), set()).update(seen[start:])
        return EXACT  # as if bfloat16 had measured no faster

    monkeypatch.setattr(explainer_module, "faster_mode", choose_exact)
    try:
        found = cam.explain(images)
        explained = len(seen)
        cam.explain(images)  # measured already: only the explanation's own passes
        later = set(seen[explained:])
    finally:
        handle.remove()
    # The exact runs timed float32, the candidate bfloat16 (not what ran before them).
    assert timed == {"None": {torch.float32}, "bfloat16": {torch.bfloat16}}
    assert later == {torch.float32}
    # Every pass of the explanations after the timing ran in float32: the exact maps.
    np.testing.assert_array_equal(
        found.saliency, GroupCAM(model, groups=4).explain(images).saliency
    )
    assert not cam.fast_mode.active


class _NoBfloat16(nn.Module):
    """Refuses to run in bfloat16, as a model with an operation lacking the kernel does."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net[0](x)
        if out.dtype == torch.bfloat16:
            raise NotImplementedError("no bfloat16 kernel for this operation")
        return self.net[1:](out)


def test_a_model_that_fails_in_bfloat16_gets_the_exact_maps_and_a_warning() -> None:
    net = tiny_cnn()
    model = _NoBfloat16(net).eval()
    images = torch.randn(2, 3, 24, 24)
    cam = GroupCAM(model, groups=4, fast=True)
    cam._fast_mode = lambda x=None: BFLOAT16
    with pytest.warns(UserWarning, match="bfloat16 passes failed on this model"):
        found = cam.explain(images)
    np.testing.assert_array_equal(
        found.saliency, GroupCAM(model, groups=4).explain(images).saliency
    )
    assert not cam.fast_mode.active
    assert "NotImplementedError" in cam.fast_mode.reason
