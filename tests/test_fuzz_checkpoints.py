"""Fuzzing load_networks: a few hundred mutated checkpoints (fixed seed) either load or are refused
with a CheckpointError naming the file, quickly and in bounded memory, and never run code.

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
from pathlib import Path

import pytest
import torch
from probe_util import probe
from test_checkpoint_security import _CreatesMarker, nvidia_snapshot, tiny_nets

from hrinv_nb.checkpoints import save_networks

SEED = 20240611
PER_SEED = 90  # mutants per seed file (4 seeds) + 20 random files: about 380 files
# Time and memory are measured in one child process under a 1.5 GiB address-space cap (tests/probe_util.py).
# Measured on a shared 2-core machine: the slowest file 0.02 s, all 393 loads 0.7 s, the child run with
# its torch import about 2.5 s; peak RSS growth at most 15 MB (the first seed load), under 5 MB for every
# mutant. A 15-byte pickle whose BYTEARRAY8 declares 1 GiB grows it by 1024 MB.
MAX_SECONDS_PER_FILE = 3.0
MAX_SECONDS_TOTAL = 60.0
MAX_RSS_GROWTH_MB_PER_FILE = 256  # peak RSS during one load minus RSS before it


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
    paths = [files["safetensors"], files["pickle"], files["pt"]]  # the seeds themselves are valid
    for case, data, suffix in cases:
        paths.append(tmp_path / f"{case}{suffix}")
        paths[-1].write_bytes(data)

    # All files in one child process under a memory cap (tests/probe_util.py).
    start = time.perf_counter()
    results = probe(paths, "hrinv_nb.checkpoints:load_networks", timeout=MAX_SECONDS_TOTAL)
    total = time.perf_counter() - start

    assert not marker.exists(), "a mutated checkpoint ran code"
    for seed in paths[:3]:
        assert results[str(seed)]["error"] is None, results[str(seed)]
        assert results[str(seed)]["result"] == {"type": "Networks"}
    outcomes = {"loaded": 0, "refused": 0}
    problems = []
    for path in paths[3:]:
        r = results[str(path)]
        if r["error"] is None:
            outcomes["loaded"] += 1
        elif "HrinvError" in r["mro"]:  # CheckpointError (and UnsafePickleError) are HrinvErrors
            outcomes["refused"] += 1
            if path.name not in r["message"] or "weights_only" in r["message"]:
                problems.append(f"{path.name}: {r['error']}: {r['message'][:300]}")
        else:  # the point: nothing else may escape
            problems.append(f"{path.name}: unexpected {r['error']}: {r['message'][:300]}")
        if r["capped"]:  # a MemoryError, even one wrapped in a CheckpointError: the cap was hit
            problems.append(f"{path.name}: ran out of memory under the cap: {r['chain']} {r['message'][:300]}")
        if r["seconds"] > MAX_SECONDS_PER_FILE:
            problems.append(f"{path.name}: {r['seconds']:.1f} s")
        if r["rss_growth_mb"] > MAX_RSS_GROWTH_MB_PER_FILE:
            problems.append(f"{path.name}: peak RSS +{r['rss_growth_mb']:.0f} MB")
    assert not problems, f"{len(problems)} problems in {len(cases)} files:\n" + "\n".join(problems[:20])
    assert total < MAX_SECONDS_TOTAL, f"{total:.1f} s for {len(cases)} files"
    assert len(cases) >= 350 and outcomes["refused"] > 100, outcomes
