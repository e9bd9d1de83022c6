"""Small seeded torch models for the adapter tests (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn


def tiny_cnn(seed: int = 0, classes: int = 5, width: int = 10) -> nn.Sequential:
    """conv-bn-relu(in place) x2, global pooling, linear. ``width`` channels at index 3."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(inplace=True),
        nn.Conv2d(8, width, 3, stride=2, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, classes),
    )
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for layer in (model[1], model[4]):
            layer.running_mean.uniform_(-0.2, 0.2)
            layer.running_var.uniform_(0.5, 1.5)
            layer.weight.uniform_(0.5, 1.5)
            layer.bias.uniform_(-0.2, 0.2)
    return model.eval()


class Bottleneck(nn.Module):
    """A residual block that calls one shared ReLU module three times, as torchvision's."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.conv1(x))
        out = self.relu(self.bn(self.conv2(out)))
        return self.relu(out + x)


class TinyResNet(nn.Module):
    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.stem = nn.Conv2d(3, 12, 3, stride=2, padding=1)
        self.layer1 = nn.Sequential(Bottleneck(12), Bottleneck(12))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer1(self.stem(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class TupleOutput(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        logits = self.inner(x)
        return logits, logits.mean()


class DictOutput(TupleOutput):
    def forward(self, x):
        return {"logits": self.inner(x), "aux": 0}


class AttributeOutput(TupleOutput):
    def forward(self, x):
        return SimpleNamespace(logits=self.inner(x), hidden=None)


class CustomKeyOutput(TupleOutput):
    def forward(self, x):
        return {"scores": self.inner(x), "features": x}


class SoftmaxHead(TupleOutput):
    def forward(self, x):
        return torch.softmax(self.inner(x), dim=1)


def blob_images(count: int, seed: int, size: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise images with one bright blob at a random place; the label is its color.

    Classes 0-2 brighten one color channel, class 3 all three. Returns the
    images, the labels and the blob centers (row, column).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    images = rng.normal(scale=0.4, size=(count, 3, size, size)).astype(np.float32)
    labels = rng.integers(0, 4, size=count)
    centers = rng.uniform(6, size - 6, size=(count, 2))
    for i, label in enumerate(labels):
        blob = np.exp(-((yy - centers[i, 0]) ** 2 + (xx - centers[i, 1]) ** 2) / 8.0)
        color = np.ones(3) if label == 3 else np.eye(3)[label]
        images[i] += (2.0 * color[:, None, None] * blob[None]).astype(np.float32)
    return images, labels, centers


#: The trained blob net's weights, shipped so that no test session trains it again.
BLOB_NET_WEIGHTS = Path(__file__).with_name("assets") / "blob_net.npz"


def blob_net_architecture() -> nn.Sequential:
    """The blob net's layers, untrained (seeded)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 4),
    )


def train_blob_net(steps: int = 150) -> nn.Module:
    """Train the blob net for a few seconds to tell the color of the blob (seeded)."""
    model = blob_net_architecture()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(steps):
        images, labels, _ = blob_images(64, seed=1000 + step)
        loss = nn.functional.cross_entropy(
            model(torch.from_numpy(images)), torch.from_numpy(labels)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


def trained_blob_net() -> nn.Module:
    """The trained blob net, loaded from ``assets/blob_net.npz`` (in eval mode).

    Regenerate the asset with ``python tests/_support/torch_models.py``.
    """
    model = blob_net_architecture()
    with np.load(BLOB_NET_WEIGHTS) as saved:
        state = {name: torch.from_numpy(saved[name].copy()) for name in saved.files}
    model.load_state_dict(state)
    return model.eval()


def save_blob_net(model: nn.Module, path: Path = BLOB_NET_WEIGHTS) -> None:
    """Write the blob net's state (parameters and BatchNorm buffers) as ``.npz``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{name: t.detach().cpu().numpy() for name, t in model.state_dict().items()})


if __name__ == "__main__":
    save_blob_net(train_blob_net())
    print(f"wrote {BLOB_NET_WEIGHTS}")
