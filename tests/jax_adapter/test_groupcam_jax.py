"""The JAX adapter: three ways in, side effects, errors, compilation, layouts."""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _support.jax_models import (
    LinenBlobNet,
    NnxBlobNet,
    Relu,
    blob_net_functions,
    linen_blob_variables,
    nnx_blob_net,
    snapshot,
    tree_equal,
)
from flax import linen, nnx

from groupcam_core import (
    ConfigError,
    InputError,
    LayerNotFoundError,
    ModelOutputError,
    TargetLayerError,
)
from groupcam_jax import GroupCAM


def images(count: int = 2, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, size, size, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def linen_net(blob_net):
    return LinenBlobNet(), linen_blob_variables(blob_net)


# ---------------------------------------------------------------- linen


class Stage(linen.Module):
    features: int
    running: bool = False

    @linen.compact
    def __call__(self, x):
        x = linen.Conv(self.features, (3, 3), name="conv")(x)
        return linen.relu(linen.BatchNorm(use_running_average=self.running, name="norm")(x))


class NestedLinen(linen.Module):
    """setup-style submodules, a module called twice, Dropout and a train flag."""

    inference: bool = False

    def setup(self) -> None:
        self.stem = linen.Conv(8, (3, 3), strides=2)
        self.backbone = [Stage(8, self.inference), Stage(12, self.inference)]
        self.shared = linen.Conv(12, (1, 1))
        self.drop = linen.Dropout(0.5)
        self.head = linen.Dense(5)

    def __call__(self, x, train: bool = True):
        x = self.stem(x)
        for stage in self.backbone:
            x = stage(x)
        x = linen.relu(self.shared(linen.relu(self.shared(x))))
        x = self.drop(jnp.mean(x, axis=(1, 2)), deterministic=not train)
        return self.head(x)


@pytest.fixture(scope="module")
def nested_linen():
    module = NestedLinen()
    variables = module.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    return module, variables


def test_linen_leaves_variables_and_module_unchanged(nested_linen) -> None:
    module, variables = nested_linen
    before = snapshot(variables)
    module_before = copy.deepcopy(module)
    GroupCAM.from_linen(module, variables, "backbone_1", groups=4).explain(images())
    assert tree_equal(variables, before)
    assert set(variables) == {"params", "batch_stats"}
    assert module == module_before


def test_linen_runs_batchnorm_and_dropout_in_inference_mode(nested_linen) -> None:
    module, variables = nested_linen
    x = images()
    # NestedLinen defaults to train=True (random dropout) and its Stage
    # BatchNorms hard-code use_running_average=False (batch statistics).
    default = GroupCAM.from_linen(module, variables, "backbone_1", groups=4).explain(x)
    inference = GroupCAM.from_linen(
        NestedLinen(inference=True),
        variables,
        "backbone_1",
        groups=4,
        apply_kwargs={"train": False},
    ).explain(x)
    np.testing.assert_allclose(default.saliency, inference.saliency, atol=1e-6)
    np.testing.assert_allclose(default.group_scores, inference.group_scores, atol=1e-6)
    # ...and batch statistics would have given other outputs.
    training, _ = module.apply(
        variables, jnp.asarray(x), mutable=["batch_stats"], rngs={"dropout": jax.random.key(1)}
    )
    evaluated = NestedLinen(inference=True).apply(variables, jnp.asarray(x), train=False)
    assert not np.allclose(training, evaluated, atol=1e-3)


def test_linen_default_layer_and_last_call_of_a_shared_module(nested_linen) -> None:
    module, variables = nested_linen
    cam = GroupCAM.from_linen(module, variables, groups=4)
    assert cam.target_layer_name is None
    cam(images())
    assert cam.target_layer_name == "shared"

    def features_fn(x):
        def upto_shared(m, x):
            x = m.stem(x)
            for stage in m.backbone:
                x = stage(x)
            return m.shared(linen.relu(m.shared(x)))

        return NestedLinen(inference=True).apply(variables, x, method=upto_shared)

    def head_fn(h):
        return module.apply(
            variables,
            h,
            method=lambda m, h: m.head(jnp.mean(linen.relu(h), axis=(1, 2))),
        )

    x = images()
    split = GroupCAM(features_fn, head_fn, groups=4).explain(x)
    np.testing.assert_allclose(cam.explain(x).saliency, split.saliency, atol=1e-5)


# ---------------------------------------------------------------- NNX


class NnxStack(nnx.Module):
    """Submodules in an nnx.List, addressed as 'blocks/1'."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.blocks = nnx.List(
            [nnx.Conv(3, 6, (3, 3), rngs=rngs), nnx.Conv(6, 6, (3, 3), strides=2, rngs=rngs)]
        )
        self.head = nnx.Linear(6, 3, rngs=rngs)

    def __call__(self, x):
        for block in self.blocks:
            x = nnx.relu(block(x))
        return self.head(jnp.mean(x, axis=(1, 2)))


def test_nnx_leaves_the_model_exactly_as_it_was(blob_net) -> None:
    model = nnx_blob_net(blob_net)  # in training mode
    graphdef, state = nnx.split(model)
    before = snapshot(state)
    exp = GroupCAM.from_nnx(model, "relu6", groups=8).explain(images(size=64))
    assert not exp.degenerate.any()
    assert model.bn3.use_running_average is False
    assert model.drop.deterministic is False
    graphdef_after, state_after = nnx.split(model)
    assert graphdef_after == graphdef
    assert tree_equal(state_after, before)
    assert type(model.relu6).__name__ == "NnxRelu"  # the tap lives on a private copy only


def test_nnx_explains_in_evaluation_mode_whatever_the_model_is_in(blob_net) -> None:
    x = images(size=64)
    training = nnx_blob_net(blob_net)
    evaluating = nnx_blob_net(blob_net)
    evaluating.eval()
    first = GroupCAM.from_nnx(training, "relu6", groups=8).explain(x)
    second = GroupCAM.from_nnx(evaluating, "relu6", groups=8).explain(x)
    np.testing.assert_array_equal(first.saliency, second.saliency)
    np.testing.assert_array_equal(first.group_scores, second.group_scores)
    assert evaluating.bn3.use_running_average is True


def test_nnx_targets_by_path_index_and_object() -> None:
    model = NnxStack(nnx.Rngs(0))
    x = images()
    by_path = GroupCAM.from_nnx(model, "blocks/1", groups=3).explain(x)
    by_dots = GroupCAM.from_nnx(model, "blocks.1", groups=3).explain(x)
    by_object = GroupCAM.from_nnx(model, model.blocks[1], groups=3).explain(x)
    automatic = GroupCAM.from_nnx(model, groups=3)
    automatic(x)
    assert automatic.target_layer_name == "blocks/1"
    np.testing.assert_array_equal(by_path.saliency, by_dots.saliency)
    np.testing.assert_array_equal(by_path.saliency, by_object.saliency)
    assert by_path.layer == "blocks/1"


def test_nnx_reads_the_current_weights_on_each_call() -> None:
    model = NnxStack(nnx.Rngs(0))
    cam = GroupCAM.from_nnx(model, "blocks/1", groups=3)
    x = images()
    first = cam.explain(x)
    model.blocks[0].kernel[...] = model.blocks[0].kernel[...] * -1.0
    second = cam.explain(x)
    fresh = GroupCAM.from_nnx(model, "blocks/1", groups=3).explain(x)
    assert not np.allclose(first.saliency, second.saliency)
    np.testing.assert_array_equal(second.saliency, fresh.saliency)


def test_nnx_rejects_a_module_from_elsewhere() -> None:
    model = NnxStack(nnx.Rngs(0))
    with pytest.raises(LayerNotFoundError, match="not a submodule"):
        GroupCAM.from_nnx(model, nnx.Conv(3, 3, (1, 1), rngs=nnx.Rngs(0)))


# ---------------------------------------------------------------- all ways in


def _three_ways(blob_net, **kwargs):
    return {
        "linen": GroupCAM.from_linen(
            LinenBlobNet(), linen_blob_variables(blob_net), "relu6", groups=8, **kwargs
        ),
        "nnx": GroupCAM.from_nnx(nnx_blob_net(blob_net), "relu6", groups=8, **kwargs),
        "functions": GroupCAM(*blob_net_functions(blob_net), groups=8, **kwargs),
    }


@pytest.mark.parametrize(
    ("target", "close"),
    [("relu_6", "relu6"), ("c55", "c5"), ("bn", "bn3")],
)
def test_unknown_paths_list_close_matches(blob_net, target, close) -> None:
    for name in ("linen", "nnx"):
        cam = _three_ways(blob_net)[name]
        cam._layers = (target,)  # as if the user had passed it
        with pytest.raises(LayerNotFoundError, match=repr(close)) as raised:
            cam.explain(images())
        assert isinstance(raised.value, KeyError)
        assert isinstance(raised.value, ValueError)
    # Caught at construction, before any batch is seen: linen traces the module
    # abstractly on a probe when the path is not in the variables tree.
    with pytest.raises(LayerNotFoundError, match=repr(close)):
        GroupCAM.from_nnx(nnx_blob_net(blob_net), target)
    with pytest.raises(LayerNotFoundError, match=repr(close)):
        GroupCAM.from_linen(LinenBlobNet(), linen_blob_variables(blob_net), target)


class _FlattenHead(linen.Module):
    """Needs exactly 32 x 32 inputs (a Dense on the flattened map): probes of other sizes fail."""

    @linen.compact
    def __call__(self, x):
        x = Relu(name="act")(linen.Conv(4, (3, 3), name="conv")(x))
        return linen.Dense(3, name="head")(x.reshape(x.shape[0], -1))


def test_a_parameter_free_linen_layer_of_a_fixed_size_model_is_checked_on_first_call() -> None:
    module = _FlattenHead()
    variables = module.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    cam = GroupCAM.from_linen(module, variables, "act", groups=2)  # no probe fits: accepted
    assert cam.explain(images()).saliency.shape == (2, 32, 32)
    misspelt = GroupCAM.from_linen(module, variables, "actt", groups=2)
    with pytest.raises(LayerNotFoundError, match="'act'"):
        misspelt.explain(images())


def test_a_layer_that_is_not_a_feature_map_is_refused(blob_net) -> None:
    cam = GroupCAM.from_linen(LinenBlobNet(), linen_blob_variables(blob_net), "fc")
    with pytest.raises(TargetLayerError, match="4-D feature map"):
        cam.explain(images())


def test_a_wrong_channel_count_names_the_batch(blob_net) -> None:
    """The model's (Flax's, JAX's) own error, of its own type, with a note naming the batch."""
    for name, cam in _three_ways(blob_net).items():
        with pytest.raises(Exception, match=r"groupcam: .*\(2, 32, 32, 4\)") as raised:
            cam.explain(np.zeros((2, 32, 32, 4), dtype=np.float32))
        assert not isinstance(raised.value, InputError), name


def test_bad_jax_settings_get_clear_errors(blob_net) -> None:
    with pytest.raises(ConfigError, match="layout"):
        GroupCAM(*blob_net_functions(blob_net), layout="NHWC")
    with pytest.raises(ConfigError, match="model_outputs"):
        GroupCAM(*blob_net_functions(blob_net), model_outputs="softmax")


def test_wrong_kinds_of_model_are_refused(blob_net) -> None:
    from groupcam_core import BackendError

    with pytest.raises(BackendError, match=r"flax\.linen\.Module"):
        GroupCAM.from_linen(nnx_blob_net(blob_net), {})
    with pytest.raises(BackendError, match="'params'"):
        GroupCAM.from_linen(LinenBlobNet(), {"weights": {}})
    with pytest.raises(BackendError, match=r"flax\.nnx\.Module"):
        GroupCAM.from_nnx(LinenBlobNet())
    with pytest.raises(BackendError, match="callable"):
        GroupCAM(np.zeros(3), lambda h: h)
    with pytest.raises(BackendError, match="leave target_layer out"):
        GroupCAM(*blob_net_functions(blob_net)).way_in.resolve("other", "channels_last")


def test_outputs_are_selected_and_checked(blob_net) -> None:
    features_fn, head_fn = blob_net_functions(blob_net)
    x = images()
    plain = GroupCAM(features_fn, head_fn, groups=8).explain(x)

    def as_dict(h):
        return {"logits": head_fn(h), "embedding": jnp.mean(h, axis=(1, 2))}

    chosen = GroupCAM(features_fn, as_dict, groups=8).explain(x)
    indexed = GroupCAM(features_fn, lambda h: (jnp.mean(h), head_fn(h)), groups=8, output=1)
    np.testing.assert_array_equal(plain.saliency, chosen.saliency)
    np.testing.assert_array_equal(plain.saliency, indexed.explain(x).saliency)

    probabilities = GroupCAM(
        features_fn, lambda h: jax.nn.softmax(head_fn(h)), groups=8, model_outputs="probabilities"
    ).explain(x)
    # Softmax is applied once either way (step 1 then differentiates the
    # probability instead of the logit, so the masks differ).
    np.testing.assert_allclose(probabilities.target_probabilities, plain.target_probabilities, 1e-5)
    np.testing.assert_allclose(probabilities.baseline_scores, plain.baseline_scores, atol=1e-6)

    with pytest.raises(ModelOutputError, match=r"shape \(2, 4, 1\)"):
        GroupCAM(features_fn, lambda h: head_fn(h)[..., None], groups=8).explain(x)
    with pytest.raises(ModelOutputError, match="keys"):
        GroupCAM(features_fn, lambda h: {"a": head_fn(h), "b": head_fn(h)}, groups=8).explain(x)


def test_channels_first_functions(blob_net) -> None:
    features_fn, head_fn = blob_net_functions(blob_net)
    x = images()
    last = GroupCAM(features_fn, head_fn, groups=8).explain(x)
    first = GroupCAM(
        lambda x: features_fn(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2),
        lambda h: head_fn(h.transpose(0, 2, 3, 1)),
        groups=8,
        layout="channels_first",
    ).explain(x.transpose(0, 3, 1, 2))
    np.testing.assert_allclose(first.saliency, last.saliency, atol=1e-5)


def test_compiled_passes_are_traced_once_per_shape(blob_net) -> None:
    features_fn, head_fn = blob_net_functions(blob_net)
    traced: list[int] = []

    def counting_features(x):
        traced.append(x.shape[0])
        return features_fn(x)

    cam = GroupCAM(counting_features, head_fn, groups=8, batch_size=8)
    cam.explain(images(4))  # 4 baselines + 32 masked inputs: chunks 8, 8, 8, 8, 4
    first = sorted(traced)
    assert first.count(8) == 1
    assert first.count(4) >= 2
    traced.clear()
    cam.explain(images(4, seed=1))
    assert traced == []
    cam.explain(images(3))  # 27 rows: chunks 8, 8, 8 and a tail of 3 padded to 4
    assert set(traced) == {3}  # only the gradient pass sees a new shape
    traced.clear()
    cam.explain(images(3, seed=2), targets=[0, 1, 2])
    assert traced == []


def test_repr_names_the_model_and_layer(blob_net) -> None:
    cam = _three_ways(blob_net)["nnx"]
    assert "NnxBlobNet" in repr(cam)
    assert "relu6" in repr(cam)
    assert "last feature layer" in repr(GroupCAM.from_nnx(NnxBlobNet(nnx.Rngs(0))))
