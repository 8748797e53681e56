"""Memory-derived batch sizes (hrinv_nb.memory), the streamed output folder (hrinv_nb.stream) and the
streamed, resumable projection (hrinv_nb.projector.project_stream)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_generator

from hrinv_nb import memory
from hrinv_nb.gallery import StreamedStylized, stylize_pairs
from hrinv_nb.images import save_image
from hrinv_nb.lso import lso
from hrinv_nb.projector import load_projection, project_batch, project_stream
from hrinv_nb.stream import (
    ImageFiles,
    ResumeMismatchError,
    chunk_bounds,
    encode_generator,
    fingerprint,
    load_image_npz,
    open_store,
    restore_generator,
)

GIB = memory.GIB


class Stop(Exception):
    """Raised by a test callback to interrupt a run."""


# ----------------------------------------------------------------------------------------------
# memory


def test_default_batch_size_scales_with_free_memory_and_pixels():
    assert memory.default_batch_size("projection", 256, free_bytes=10 * GIB, fraction=1.0) == 11  # 10 / 0.9
    assert memory.default_batch_size("lso", 256, free_bytes=10 * GIB, fraction=1.0) == 12  # 10 / 0.8
    # 1024²: 16x the pixels of 256² -> 14.4 GiB per projection; an 80-GiB GPU at 70 % holds 3
    assert memory.default_batch_size("projection", 1024, free_bytes=80 * GIB) == 3
    assert memory.default_batch_size("projection", (512, 128), free_bytes=10 * GIB, fraction=1.0) == 11
    assert memory.default_batch_size("projection", 1024, free_bytes=1) == 1  # never below 1
    assert memory.default_batch_size("projection", 32, free_bytes=GIB) == 49  # tiny images: large batches
    with pytest.raises(ValueError, match="kind"):
        memory.default_batch_size("training", 256, free_bytes=GIB)
    with pytest.raises(ValueError, match="fraction"):
        memory.default_batch_size("lso", 256, free_bytes=GIB, fraction=0.0)
    with pytest.raises(ValueError, match="resolution"):
        memory.per_item_bytes("lso", (0, 3))


def test_free_memory_reads_the_device_and_meminfo(tmp_path):
    assert memory.free_memory_bytes("cpu") > 0
    assert memory.default_batch_size("render", 64, "cpu") >= 1
    fake = tmp_path / "meminfo"
    fake.write_text("MemTotal: 100 kB\nMemAvailable:    2048 kB\n")
    assert memory._meminfo_available(str(fake)) == 2048 * 1024
    assert memory._meminfo_available(str(tmp_path / "absent")) is None
    assert memory.resolve_batch_size(5, "lso", 64) == 5
    assert memory.resolve_batch_size(None, "lso", 64) >= 1
    with pytest.raises(ValueError, match="positive"):
        memory.resolve_batch_size(-2, "lso", 64)


# ----------------------------------------------------------------------------------------------
# the store


def test_fingerprint_sees_values_tensors_and_modules():
    a = torch.nn.Linear(2, 2)
    b = torch.nn.Linear(2, 2)
    with torch.no_grad():
        b.weight.copy_(a.weight)
        b.bias.copy_(a.bias)
    assert fingerprint(a) == fingerprint(b)
    b.extra = 3  # a plain public attribute (as a loss's λ table) counts
    assert fingerprint(a) != fingerprint(b)
    assert fingerprint(torch.ones(3)) != fingerprint(torch.ones(4))
    assert fingerprint({"x": (1, 2.0)}) == {"x": [1, 2.0]}
    json.dumps(fingerprint({"t": torch.zeros(2), "f": float("nan"), "fn": fingerprint}))


def test_store_resumes_and_refuses_other_parameters(tmp_path):
    params = {"steps": 3, "target": torch.arange(4.0)}
    store = open_store(tmp_path, "demo", params, 5, None, lambda: 2)
    assert store.batch_size == 2 and store.bounds == [(0, 2), (2, 4), (4, 5)] == chunk_bounds(5, 2)
    path = store.item_path(0, "x.json")
    store.write_chunk(0, 2, [(path, lambda tmp: Path(tmp).write_text("{}"))], [{"i": 0}, {"i": 1}], {"k": 1})
    again = open_store(tmp_path, "demo", params, 5, None, lambda: 99)  # the manifest's batch size wins
    assert again.batch_size == 2 and set(again.completed()) == {0} and again.completed()[0].extra == {"k": 1}
    with pytest.raises(ResumeMismatchError, match="steps"):
        open_store(tmp_path, "demo", {**params, "steps": 4}, 5, None, lambda: 2)
    with pytest.raises(ResumeMismatchError, match="target"):
        open_store(tmp_path, "demo", {**params, "target": torch.arange(4.0) + 1}, 5, None, lambda: 2)
    with pytest.raises(ResumeMismatchError, match="batch_size"):
        open_store(tmp_path, "demo", params, 5, 3, lambda: 2)
    with pytest.raises(ResumeMismatchError, match="n_items"):
        open_store(tmp_path, "demo", params, 6, None, lambda: 2)
    with pytest.raises(ResumeMismatchError, match="kind"):
        open_store(tmp_path, "other", params, 5, None, lambda: 2)
    gen = torch.Generator().manual_seed(3)
    state = encode_generator(gen)
    first = torch.randn(4, generator=gen)
    restore_generator(gen, state)
    assert torch.equal(torch.randn(4, generator=gen), first)


# ----------------------------------------------------------------------------------------------
# streamed, resumable projection


def _targets(n: int) -> torch.Tensor:
    return (torch.rand([n, 3, 32, 32], generator=torch.Generator().manual_seed(7)) * 1.6 - 0.8).float()


COMMON = dict(loss="mse", num_steps=3, w_avg_samples=300, progress=False, seed=5)


@pytest.fixture(scope="module")
def G():
    return tiny_generator(noise_strength=0.3)


def test_batch_size_at_least_b_is_the_one_batch_result(G):
    targets = _targets(3)
    whole = project_batch(G, targets, batch_size=3, **COMMON)
    for result in (project_batch(G, targets, batch_size=50, **COMMON), project_batch(G, targets, **COMMON)):
        assert torch.equal(result.w, whole.w) and torch.equal(result.images, whole.images)
        assert result.history == whole.history
    with pytest.raises(ValueError, match="disagree"):
        project_batch(G, targets, batch_size=2, chunk_size=3, **COMMON)


def test_stream_interrupted_and_resumed_equals_uninterrupted(G, tmp_path):
    targets = _targets(5)
    memory_run = project_batch(G, targets, batch_size=2, **COMMON)
    full = project_stream(G, targets, tmp_path / "full", batch_size=2, **COMMON)
    assert full.computed == [(0, 2), (2, 4), (4, 5)] and full.batch_size == 2
    assert torch.equal(full.w, memory_run.w) and full.history == memory_run.history
    for i in range(5):
        assert torch.equal(full.image(i), memory_run.images[i : i + 1])
        sample = full.sample(i)
        assert all(torch.equal(sample.noise[k], memory_run.noise[k][i]) for k in memory_run.noise)

    def interrupt(start: int, stop: int) -> None:
        if start >= 2:
            raise Stop

    folder = tmp_path / "resumed"
    with pytest.raises(Stop):
        project_stream(G, targets, folder, batch_size=2, on_chunk=interrupt, **COMMON)
    assert sorted(p.name for p in (folder / "chunks").iterdir()) == ["00000000-00000002.json", "00000002-00000004.json"]
    seen: list[tuple[int, int]] = []
    resumed = project_stream(G, targets, folder, on_chunk=lambda a, b: seen.append((a, b)), **COMMON)
    assert seen == resumed.computed == [(4, 5)], "finished chunks are not recomputed"
    assert torch.equal(resumed.w, full.w) and resumed.history == full.history
    assert (folder / "metrics.jsonl").read_text() == (tmp_path / "full" / "metrics.jsonl").read_text()
    for i in range(5):
        assert torch.equal(resumed.image(i), full.image(i))
        assert torch.equal(load_projection(folder / resumed.records[i]["projection"])[1]["b4.conv1.noise_const"],
                           full.sample(i).noise["b4.conv1.noise_const"])  # fmt: skip
    again = project_stream(G, targets, folder, **COMMON)  # all done: nothing runs
    assert again.computed == [] and torch.equal(again.w, full.w)
    with pytest.raises(ResumeMismatchError, match="num_steps"):
        project_stream(G, targets, folder, **{**COMMON, "num_steps": 4})
    with pytest.raises(ResumeMismatchError, match="targets"):
        project_stream(G, targets.flip(0), folder, **COMMON)


def test_stream_reads_image_files_a_chunk_at_a_time(G, tmp_path):
    targets = _targets(3)
    files = []
    for i, name in enumerate(("1.png", "2.png", "10.png")):
        files.append(save_image(targets[i : i + 1], tmp_path / name))
    seen = []

    def measure(images: torch.Tensor, tgt: torch.Tensor) -> dict[str, list[float]]:
        seen.append(tgt.shape[0])
        return {"l1": (images - tgt).abs().mean(dim=(1, 2, 3)).tolist()}

    out = project_stream(
        G, ImageFiles(files, 32, min_short_side=32), tmp_path / "out", batch_size=2, names=["1", "2", "10"], measure=measure,
        image_format="png", **COMMON,
    )  # fmt: skip
    assert seen == [2, 1] and [r["name"] for r in out.records] == ["1", "2", "10"]
    assert all("l1" in r and "mse" in r for r in out.records)
    lines = (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == [0, 1, 2]
    assert out.image(2).shape == (1, 3, 32, 32)
    assert [t.shape[0] for t in out.iter_images(2)] == [2, 1]
    with pytest.raises(Exception, match="image"):
        load_image_npz(tmp_path / "out" / out.records[0]["projection"])


# ----------------------------------------------------------------------------------------------
# LSO and stylisation


@pytest.fixture(scope="module")
def codes(gens):
    """2 content codes with their images (scaled into [-1, 1]) and 3 style codes."""
    G_s, G_t = gens
    with torch.no_grad():
        w_s = G_s.mapping(torch.randn(2, G_s.z_dim, generator=torch.Generator().manual_seed(2)), None)
        contents = G_s.synthesis(w_s, noise_mode="const") / 20
        w_t = G_t.mapping(torch.randn(3, G_t.z_dim, generator=torch.Generator().manual_seed(3)), None)
    return w_s, contents, w_t


LSO_KW = {"num_steps": 3, "loss": "mse", "seed": 3, "rows": (1, 2), "reg_weight": 1e-3, "init_scale": 0.5}


def test_lso_batch_size(gens, codes):
    G_s, _ = gens
    w_s, contents, _ = codes
    w_m = torch.cat([w_s, w_s + 0.1])
    target = torch.cat([contents, contents])
    whole = lso(G_s, w_m, target, progress=False, batch_size=4, **LSO_KW)
    for size in (None, 0, 9):
        again = lso(G_s, w_m, target, progress=False, batch_size=size, **LSO_KW)
        assert torch.equal(again.w, whole.w) and torch.equal(again.image, whole.image)
        assert again.history == whole.history
    parts = lso(G_s, w_m, target, progress=False, batch_size=3, **LSO_KW)  # batches of 3 and 1, same initial offsets
    torch.testing.assert_close(parts.w, whole.w, atol=1e-3, rtol=0)
    assert len(parts.history["loss"]) == 3
    with pytest.raises(ValueError, match="batch_size"):
        lso(G_s, w_m, target, progress=False, batch_size=-1, **LSO_KW)


def test_stylize_pairs_streamed_resumed_equals_in_memory(gens, codes, tmp_path):
    G_s, G_t = gens
    w_s, contents, w_t = codes
    args = (G_s, G_t, w_s, w_t, "lerp_lso")
    kw = dict(contents=contents, lso_kwargs=LSO_KW, lso_batch_size=2, progress=False)
    in_memory = stylize_pairs(*args, **kw)
    assert torch.equal(
        stylize_pairs(*args, **{**kw, "lso_batch_size": None}).w, stylize_pairs(*args, **{**kw, "lso_batch_size": 6}).w
    )

    def interrupt(start: int, stop: int) -> None:
        if start >= 2:
            raise Stop

    folder = tmp_path / "pairs"
    with pytest.raises(Stop):
        stylize_pairs(*args, **kw, out_dir=folder, on_chunk=interrupt)
    out = stylize_pairs(*args, **{**kw, "lso_batch_size": None}, out_dir=folder)  # the folder's batch size
    assert isinstance(out, StreamedStylized) and out.computed == [(4, 6)] and out.batch_size == 2
    assert torch.equal(out.load_w(), in_memory.w) and torch.equal(out.load_w("w_mixed"), in_memory.w_mixed)
    assert torch.equal(torch.cat(list(out.iter_images(4))), in_memory.images)
    assert torch.equal(torch.cat(list(out.iter_images(4, "mixed"))), in_memory.mixed)
    assert [(r["content"], r["style"]) for r in out.records] == list(
        zip(in_memory.content_index.tolist(), in_memory.style_index.tolist())
    )
    assert all(r["offset_norm"] > 0 for r in out.records)
    with pytest.raises(ResumeMismatchError, match="lso_kwargs"):
        stylize_pairs(*args, **{**kw, "lso_kwargs": {**LSO_KW, "num_steps": 4}}, out_dir=folder)
    with pytest.raises(ResumeMismatchError, match="batch_size"):
        stylize_pairs(*args, **{**kw, "lso_batch_size": 3}, out_dir=folder)


def test_stylize_pairs_streams_renders_without_lso(gens, codes, tmp_path):
    G_s, G_t = gens
    w_s, _, w_t = codes
    plain = stylize_pairs(G_s, G_t, w_s, w_t, "layer_swap", swap_res=16, batch_size=4, progress=False)
    out = stylize_pairs(G_s, G_t, w_s, w_t, "layer_swap", swap_res=16, batch_size=4, out_dir=tmp_path, progress=False)
    assert out.computed == [(0, 4), (4, 6)] and len(out) == 6
    assert torch.equal(torch.cat(list(out.iter_images(6))), plain.images)
    assert torch.equal(out.load_w(), plain.w)
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 6


# ----------------------------------------------------------------------------------------------
# study helpers


def test_study_helpers_stream_like_in_memory(G, tmp_path):
    from hrinv_nb.studies import cross_domain as cd
    from hrinv_nb.studies import reconstruction as study

    targets = _targets(3)
    opts = {k: v for k, v in COMMON.items() if k != "loss"}
    row = study.run_row("mse", G, targets, "mse", batch_size=2, **opts)
    streamed = study.run_row("mse", G, targets, "mse", batch_size=2, out_dir=tmp_path / "row", **opts)
    assert streamed.images is None and streamed.measures == row.measures
    assert torch.equal(streamed.result.w, row.result.w)
    with pytest.raises(ResumeMismatchError, match="measure"):
        study.run_row("mse", G, targets, "mse", cutoff=0.25, out_dir=tmp_path / "row", **opts)
    inv = cd.invert_contents(G, targets, loss="mse", num_steps=2, progress=False, batch_size=2)
    inv_s = cd.invert_contents(G, targets, loss="mse", num_steps=2, progress=False, out_dir=tmp_path / "inv")
    assert inv_s.images is None and inv_s.stream is not None
    assert torch.equal(inv_s.w, cd.invert_contents(G, targets, loss="mse", num_steps=2, progress=False).w)
    assert inv.w.shape == inv_s.w.shape


def test_stylize_pairs_png_images_and_contents_from_files(gens, codes, tmp_path):
    """``image_format='png'``: 8-bit images beside the codes; contents read as files a batch at a time."""
    from hrinv_nb.images import load_image
    from hrinv_nb.stream import image_rows, iter_batches

    G_s, G_t = gens
    w_s, contents, w_t = codes
    files = [save_image(contents[i : i + 1], tmp_path / "in" / f"{i}.png") for i in range(2)]
    source = ImageFiles(files, contents.shape[-1], min_short_side=1)
    quantised = torch.cat([load_image(f, crop=False, min_short_side=1) for f in files])
    assert torch.equal(image_rows(source, torch.tensor([1, 0, 1])), quantised[[1, 0, 1]])
    assert torch.equal(image_rows(quantised, [1, 1]), quantised[[1, 1]])
    assert [b.shape[0] for b in iter_batches(source, 1)] == [1, 1]
    kw = dict(lso_kwargs=LSO_KW, lso_batch_size=4, progress=False)
    exact = stylize_pairs(G_s, G_t, w_s, w_t, "lerp_lso", contents=quantised, out_dir=tmp_path / "npz", **kw)
    png = stylize_pairs(
        G_s, G_t, w_s, w_t, "lerp_lso", contents=source, out_dir=tmp_path / "png", image_format="png", **kw
    )
    assert torch.equal(png.load_w(), exact.load_w()) and torch.equal(png.load_w("w_mixed"), exact.load_w("w_mixed"))
    for key in ("image", "mixed"):
        a, b = torch.cat(list(png.iter_images(4, key))), torch.cat(list(exact.iter_images(4, key)))
        assert (a - b.clamp(-1, 1)).abs().max() <= 1 / 127.5 + 1e-6, key
    assert sorted(p.name for p in (tmp_path / "png" / "items").iterdir())[:3] == [
        "000000_image.png", "000000_mixed.png", "000000_pair.npz"
    ]  # fmt: skip
    with pytest.raises(ResumeMismatchError, match="image_format"):
        stylize_pairs(G_s, G_t, w_s, w_t, "lerp_lso", contents=source, out_dir=tmp_path / "png", **kw)
    plain = stylize_pairs(G_s, G_t, w_s, w_t, "lerp", out_dir=tmp_path / "plain", progress=False)
    assert sorted(np.load(tmp_path / "plain" / plain.records[0]["file"]).files) == ["image", "w"]  # stored once
    assert torch.equal(plain.image(0, "mixed"), plain.image(0)) and torch.equal(plain.load_w("w_mixed"), plain.load_w())
