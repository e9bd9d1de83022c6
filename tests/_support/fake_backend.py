"""A small analytic 'model' in numpy that implements the backend protocol.

Features: block-average pooling of the input (1 to 3 spatial axes: a signal, an
image, a volume) by ``pool`` on every axis, a 1x1 channel mix, tanh.
Head: logits = mean(A) @ V.T + mean(A**2) @ Q.T + c, whose gradient with respect
to A is known in closed form and varies over space.
"""

from __future__ import annotations

import numpy as np

from groupcam_core.protocol import GradientPass


class FakeNumpyBackend:
    layer_name = "fake"

    def __init__(
        self,
        channels: int = 10,
        classes: int = 5,
        in_channels: int = 3,
        pool: int = 4,
        layout: str = "channels_first",
        seed: int = 0,
        dead_channels: tuple[int, ...] = (),
        fixed_batch_shape: bool = False,
        default_batch_size: int = 7,
        softmax_output: bool = False,
    ) -> None:
        rng = np.random.default_rng(seed)
        self.mix = rng.normal(size=(channels, in_channels))
        self.bias = rng.normal(scale=0.3, size=channels)
        self.mix[list(dead_channels)] = 0.0
        self.bias[list(dead_channels)] = 0.0
        self.linear = rng.normal(size=(classes, channels))
        self.quadratic = rng.normal(size=(classes, channels))
        self.offset = rng.normal(size=classes)
        self.pool = pool
        self.input_layout = layout
        self.feature_layout = layout
        self.fixed_batch_shape = fixed_batch_shape
        self.default_batch_size = default_batch_size
        self.model_outputs = "probabilities" if softmax_output else "logits"
        self.chunk_rows: list[int] = []

    # -- the model, channels-first float64 --------------------------------
    def features(self, x_cf: np.ndarray) -> np.ndarray:
        b, c, *spatial = x_cf.shape
        p = self.pool
        blocks = [part for side in spatial for part in (side // p, p)]
        pooled = x_cf.reshape(b, c, *blocks).mean(axis=tuple(range(3, 3 + 2 * len(spatial), 2)))
        mixed = np.einsum("kc,bc...->bk...", self.mix, pooled)
        return np.tanh(mixed + self.bias.reshape(-1, *(1,) * len(spatial)))

    def head(self, activations: np.ndarray) -> np.ndarray:
        space = tuple(range(2, activations.ndim))
        m1 = activations.mean(axis=space)
        m2 = (activations**2).mean(axis=space)
        logits = m1 @ self.linear.T + m2 @ self.quadratic.T + self.offset
        if self.model_outputs == "probabilities":
            z = np.exp(logits - logits.max(axis=1, keepdims=True))
            return z / z.sum(axis=1, keepdims=True)
        return logits

    def logit_gradient(self, activations: np.ndarray, targets: np.ndarray) -> np.ndarray:
        area = np.prod(activations.shape[2:])
        ones = (1,) * (activations.ndim - 2)
        v = self.linear[targets].reshape(*self.linear[targets].shape, *ones)
        q = self.quadratic[targets].reshape(*self.quadratic[targets].shape, *ones)
        return (v + 2 * q * activations) / area

    def predict_one(self, image_cf: np.ndarray) -> np.ndarray:
        return self.head(self.features(image_cf[None]))[0]

    # -- the protocol -------------------------------------------------------
    def _to_cf(self, x: np.ndarray) -> np.ndarray:
        if self.input_layout == "channels_first":
            return x
        return x.transpose(0, x.ndim - 1, *range(1, x.ndim - 1))

    def _from_cf(self, a: np.ndarray) -> np.ndarray:
        if self.feature_layout == "channels_first":
            return a
        return a.transpose(0, *range(2, a.ndim), 1)

    def prepare_input(self, x):
        return np.asarray(x)

    def gradient_pass(self, x, resolve_targets):
        activations = self.features(self._to_cf(x))
        outputs = self.head(activations)
        targets = resolve_targets(outputs)
        gradients = self.logit_gradient(activations, targets)
        if self.model_outputs == "probabilities":  # d p_t = p_t (d l_t - sum_j p_j d l_j)
            area = np.prod(activations.shape[2:])
            ones = (1,) * (activations.ndim - 2)
            p = outputs
            mean_v = (p @ self.linear).reshape(*p.shape[:1], -1, *ones)
            mean_q = (p @ self.quadratic).reshape(*p.shape[:1], -1, *ones)
            p_t = p[np.arange(len(targets)), targets].reshape(-1, 1, *ones)
            gradients = p_t * (gradients - (mean_v + 2 * mean_q * activations) / area)
        return GradientPass(self._from_cf(activations), self._from_cf(gradients), outputs, targets)

    def forward(self, x):
        self.chunk_rows.append(x.shape[0])
        return self.head(self.features(self._to_cf(x)))

    def to_numpy(self, array):
        return np.asarray(array)
