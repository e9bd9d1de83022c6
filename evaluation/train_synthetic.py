"""Train the synthetic-scene CNN and write ``evaluation/synthetic_cnn.pt``.

Run from the repository root::

    python evaluation/train_synthetic.py            # about 3-5 minutes on 2 CPU cores

Every batch is a fresh set of scenes from :func:`groupcam_core.synthetic.make_scenes`
(seed ``TRAIN_SEED_BASE + step``); the held-out accuracy is measured on 500 scenes
from ``TEST_SEED``, which no training batch uses. The script also reports the
accuracy on object-free backgrounds (should be near chance, 20 %) and the
Group-CAM pointing-game rate on 200 held-out scenes.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic_model import TARGET_LAYER, WEIGHTS_PATH, SyntheticCNN

from groupcam_core.metrics import pointing_game
from groupcam_core.synthetic import channels_first, make_backgrounds, make_scenes

log = logging.getLogger("train_synthetic")

TRAIN_SEED_BASE = 1_000
TEST_SEED = 0
VALIDATION_SEED = 1
TEST_COUNT = 500


def _tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(channels_first(images))


@torch.no_grad()
def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of ``model`` on channels-last ``images``."""
    model.eval()
    predictions = torch.cat(
        [
            model(_tensor(chunk)).argmax(1)
            for chunk in np.array_split(images, max(1, len(images) // 100))
        ]
    )
    return float((predictions.numpy() == labels).mean())


def train(steps: int, batch_size: int, lr: float, seed: int, eval_every: int = 0) -> SyntheticCNN:
    """Train a fresh :class:`SyntheticCNN` with AdamW and a one-cycle schedule.

    ``eval_every > 0`` logs the accuracy on 250 validation scenes (seed ``VALIDATION_SEED``)
    every that many steps.
    """
    validation = make_scenes(250, seed=VALIDATION_SEED) if eval_every > 0 else None
    torch.manual_seed(seed)
    model = SyntheticCNN()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=steps, pct_start=0.15
    )
    start, running = time.perf_counter(), []
    for step in range(steps):
        model.train()
        scenes = make_scenes(batch_size, seed=TRAIN_SEED_BASE + step)
        logits = model(_tensor(scenes.images))
        loss = nn.functional.cross_entropy(logits, torch.from_numpy(scenes.labels))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        running.append(loss.item())
        if (step + 1) % 100 == 0 or step + 1 == steps:
            log.info(
                "step %4d/%d  loss %.3f  %.0f s",
                step + 1,
                steps,
                np.mean(running[-100:]),
                time.perf_counter() - start,
            )
        if validation is not None and (step + 1) % eval_every == 0:
            log.info(
                "step %4d  validation accuracy %.3f",
                step + 1,
                accuracy(model, validation.images, validation.labels),
            )
    model.zero_grad(set_to_none=True)
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=WEIGHTS_PATH)
    parser.add_argument("--no-pointing", action="store_true", help="skip the Group-CAM check")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    model = train(args.steps, args.batch_size, args.lr, args.seed, args.eval_every)
    log.info("training took %.1f s", time.perf_counter() - start)

    test = make_scenes(TEST_COUNT, seed=TEST_SEED)
    log.info(
        "held-out accuracy (%d scenes, seed %d): %.3f",
        TEST_COUNT,
        TEST_SEED,
        accuracy(model, test.images, test.labels),
    )
    backgrounds = make_backgrounds(TEST_COUNT, seed=TEST_SEED)
    log.info(
        "accuracy on the same scenes without objects (chance 0.2): %.3f",
        accuracy(model, backgrounds, test.labels),
    )

    args.output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.output)
    log.info("saved %s (%.0f kB)", args.output, args.output.stat().st_size / 1024)

    if not args.no_pointing:
        from groupcam_torch import GroupCAM

        subset = make_scenes(200, seed=TEST_SEED)
        maps = GroupCAM(model, target_layer=TARGET_LAYER, groups=16)(_tensor(subset.images))
        for tolerance in (0, 3):
            hits = pointing_game(maps, subset.masks, tolerance=tolerance).hits
            log.info(
                "Group-CAM pointing game (200 scenes, tolerance %d px): %.3f",
                tolerance,
                hits.mean(),
            )


if __name__ == "__main__":
    main()
