"""Shared fixtures: the parity files (copied from NVIDIA-generated references) and small networks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "stylegan2_ada_tiny.safetensors"
EDGE = FIXTURES / "stylegan2_ada_edgecases32.safetensors"


@pytest.fixture(scope="session", autouse=True)
def _threads() -> None:
    # One thread by default: on a shared 2-core machine, 2 threads can run many times slower.
    torch.set_num_threads(int(os.environ.get("HRINV_TEST_THREADS", "1")))


@pytest.fixture(scope="session")
def tiny_tensors() -> dict[str, torch.Tensor]:
    return load_file(str(TINY))


@pytest.fixture(scope="session")
def edge_tensors() -> dict[str, torch.Tensor]:
    return load_file(str(EDGE))
