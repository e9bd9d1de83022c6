"""benchmarks/gpu_check.py runs on a CPU: it reports no GPU, and with --cpu measures tiny nets."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import gpu_check


def test_without_a_gpu_it_says_so_and_succeeds(capsys, monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--frameworks", "torch"]) == 0
    assert "no CUDA device: not measured" in capsys.readouterr().out


def test_the_torch_check_measures_and_finds_nothing_leaving_early(capsys) -> None:
    row = gpu_check.check_torch(batch=2, runs=1, cpu=True)
    assert row.on_device
    assert row.largest_early_transfer <= 2 * 8  # scalars and group flags only
    assert row.exact_s > 0
    assert row.fast_s > 0
    assert row.own_s > 0
    assert row.reference_s > 0
    assert row.fast_spearman > 0.9
    report = gpu_check.table([row])
    assert "| torch | cpu | tiny CNN | 2 |" in report


def test_a_copy_of_maps_before_the_last_pass_is_caught() -> None:
    transfers = gpu_check.Transfers()
    transfers.forward()
    transfers.transfer(224 * 224)
    transfers.forward()
    assert transfers.verdict(limit=64) == (False, 1, 224 * 224)
    transfers = gpu_check.Transfers()
    transfers.transfer(1)
    transfers.forward()
    transfers.transfer(224 * 224)  # the final result
    assert transfers.verdict(limit=64) == (True, 1, 1)
