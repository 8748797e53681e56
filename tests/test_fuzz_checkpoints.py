"""Fuzzing load_networks: a few hundred mutated checkpoints (fixed seed) either load or are refused
with a CheckpointError naming the file, quickly, and never run code.

Seeds: a valid tiny safetensors file, a valid tiny NVIDIA-style snapshot pickle (built as in
tests/test_checkpoints.py, its embedded module source would create a marker file if it ran), a
valid .pt state dict, and a hostile pickle whose payload would create the marker. Mutations:
truncations, bit flips, random header bytes, inserted/deleted/duplicated chunks, random bytes.
"""

from __future__ import annotations

import json
import pickle
import random
import time
import warnings
from pathlib import Path

import pytest
import torch
from test_checkpoint_security import _CreatesMarker, nvidia_snapshot, tiny_nets

from hrinv_nb import load_networks
from hrinv_nb.checkpoints import save_networks
from hrinv_nb.errors import HrinvError

SEED = 20240611
PER_SEED = 90  # mutants per seed file (4 seeds) + 20 random files: about 380 files
MAX_SECONDS_PER_FILE = 3.0
MAX_SECONDS_TOTAL = 60.0  # the whole run takes about 10 s on a 2-core machine


def _mutate(data: bytes, rng: random.Random) -> bytes:
    kind = rng.choice(["truncate", "flip", "flips", "header", "insert", "delete", "duplicate", "splice_tail"])
    n = len(data)
    if kind == "truncate":
        return data[: rng.randrange(0, n)]
    if kind in ("flip", "flips"):
        out = bytearray(data)
        for _ in range(1 if kind == "flip" else rng.randint(2, 16)):
            # half of the flips hit the first 512 bytes, where the headers and pickle opcodes are
            pos = rng.randrange(min(n, 512)) if rng.random() < 0.5 else rng.randrange(n)
            out[pos] ^= 1 << rng.randrange(8)
        return bytes(out)
    if kind == "header":
        k = rng.randint(1, 64)
        start = rng.randrange(0, min(n, 64))
        return data[:start] + rng.randbytes(k) + data[start + k :]
    if kind == "insert":
        pos = rng.randrange(n)
        return data[:pos] + rng.randbytes(rng.randint(1, 32)) + data[pos:]
    if kind == "delete":
        pos = rng.randrange(n)
        return data[:pos] + data[pos + rng.randint(1, 64) :]
    if kind == "duplicate":
        a = rng.randrange(n)
        b = min(n, a + rng.randint(1, 256))
        return data[:b] + data[a:b] + data[b:]
    pos = rng.randrange(n)  # splice_tail: random bytes from a random point on
    return data[:pos] + rng.randbytes(rng.randint(0, 256))


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> tuple[dict[str, Path], Path]:
    d = tmp_path_factory.mktemp("fuzz_seeds")
    marker = d / "marker_code_ran"
    G, D = tiny_nets()
    files = {"safetensors": save_networks(d / "seed.safetensors", G=G, D=D, meta={"note": "seed"})}
    with pytest.MonkeyPatch.context() as mp:
        src = f"open({str(marker)!r}, 'w').write('module source ran')\n"
        files["pickle"] = nvidia_snapshot(d / "seed.pkl", G, D, mp, src=src)
    torch.save(
        {**{f"G.{k}": v for k, v in G.state_dict().items()}, "generator_init_kwargs": json.dumps(G.init_kwargs)},
        d / "seed.pt",
    )
    files["pt"] = d / "seed.pt"
    (d / "hostile.pkl").write_bytes(pickle.dumps({"G_ema": {"x": [1, _CreatesMarker(marker), 2]}}, protocol=2))
    files["hostile"] = d / "hostile.pkl"
    return files, marker


def test_mutated_checkpoints_load_or_are_refused_naming_the_file(seeds, tmp_path):
    files, marker = seeds
    assert load_networks(files["safetensors"]).D is not None  # the seeds themselves are valid
    assert load_networks(files["pickle"]).D is not None
    assert load_networks(files["pt"]).G is not None
    rng = random.Random(SEED)
    cases: list[tuple[str, bytes, str]] = []
    for name, path in files.items():
        data = path.read_bytes()
        cases += [(f"{name}_{i:03d}", _mutate(data, rng), path.suffix) for i in range(PER_SEED)]
    cases += [
        (f"random_{i:03d}", rng.randbytes(rng.randint(1, 4096)), rng.choice([".pkl", ".pt", ".safetensors"]))
        for i in range(20)
    ]
    cases += [
        (f"random_pickle_{i:03d}", b"\x80" + bytes([rng.randint(2, 5)]) + rng.randbytes(rng.randint(0, 512)), ".pkl")
        for i in range(10)
    ]

    outcomes = {"loaded": 0, "refused": 0}
    failures, slow = [], []
    start = time.perf_counter()
    for case, data, suffix in cases:
        path = tmp_path / f"{case}{suffix}"
        path.write_bytes(data)
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. "inferred generator arguments" for a .pt that lost them
                load_networks(path)
            outcomes["loaded"] += 1
        except HrinvError as err:  # CheckpointError (and UnsafePickleError) are HrinvErrors
            outcomes["refused"] += 1
            message = str(err)
            if path.name not in message or "weights_only" in message:
                failures.append(f"{path.name}: {type(err).__name__}: {message[:300]}")
        except Exception as err:  # the point: nothing else may escape
            failures.append(f"{path.name}: unexpected {type(err).__name__}: {str(err)[:300]}")
        seconds = time.perf_counter() - t0
        if seconds > MAX_SECONDS_PER_FILE:
            slow.append(f"{path.name}: {seconds:.1f} s")
        path.unlink()
    total = time.perf_counter() - start
    assert not marker.exists(), "a mutated checkpoint ran code"
    assert not failures, f"{len(failures)} of {len(cases)} files:\n" + "\n".join(failures[:20])
    assert not slow, "slow files:\n" + "\n".join(slow)
    assert total < MAX_SECONDS_TOTAL, f"{total:.1f} s for {len(cases)} files"
    assert len(cases) >= 350 and outcomes["refused"] > 100, outcomes
