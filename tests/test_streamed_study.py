"""Notebook 12's main loop streamed to disk (hrinv_nb.studies.id_retrieval): the scores read back from the
folder equal the in-memory computation, an interrupted run resumes without recomputing finished work, and
a folder of another run is refused. Also the streamed Inception features against torch-fidelity's own FID."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_generator

from hrinv_nb.fid import frechet_distance
from hrinv_nb.gallery import pair_indices, style_codes, stylize_pairs
from hrinv_nb.images import save_image
from hrinv_nb.projector import project_batch
from hrinv_nb.retrieval import id_retrieval
from hrinv_nb.stream import ImageFiles, ResumeMismatchError
from hrinv_nb.studies.id_retrieval import (
    METHODS,
    NO_CONTENT,
    FeatureSpace,
    StudySettings,
    StyleInputs,
    retrieval_per_pair,
    run_study,
)


class Stop(Exception):
    """Raised by a test callback to interrupt a run."""


N, S, LSO_S, BATCH = 4, 3, 2, 3
SETTINGS = StudySettings(
    n_styles=S, lso_styles=LSO_S, proj_steps=5, lso_steps=2, reg_weight=1e-3, projection_loss="mse", lso_loss="mse",
    seed=0,
)  # fmt: skip


def _smooth(n: int, seed: int) -> torch.Tensor:
    """``n`` smooth random images [n, 3, 32, 32] in [-0.8, 0.8]."""
    low = torch.rand([n, 3, 8, 8], generator=torch.Generator().manual_seed(seed)) * 1.6 - 0.8
    return F.interpolate(low, size=(32, 32), mode="bilinear", align_corners=False)


def _space(name: str, pool: int, dim: int, seed: int) -> FeatureSpace:
    """A fixed random projection of average-pooled pixels, unit-normalised."""
    proj = torch.randn([3 * (32 // pool) ** 2, dim], generator=torch.Generator().manual_seed(seed))

    def embed(img: torch.Tensor) -> torch.Tensor:
        return F.normalize(F.avg_pool2d(img.float(), pool).flatten(1) @ proj, dim=1)

    return FeatureSpace(name, embed, {"pool": pool, "dim": dim, "seed": seed})


IDENTITY = _space("identity", 16, 16, 1)  # coarse enough to retrieve above chance
SPACES = [IDENTITY, _space("coarse", 8, 8, 2)]


@pytest.fixture(scope="module")
def world():
    G_s = tiny_generator(seed=0)
    G_ts = {"cartoon": tiny_generator(seed=1), "anime": tiny_generator(seed=2)}
    contents = _smooth(N, 10)
    return G_s, G_ts, contents


def _styles(G_ts, loads: list[str] | None = None, key_suffix: str = "") -> list[StyleInputs]:
    def loader(name: str):
        def load():
            if loads is not None:
                loads.append(name)
            return G_ts[name]

        return load

    return [
        StyleInputs(
            name, loader(name), f"tiny-{name}{key_suffix}", reference=_smooth(5, 20 + k), floor=_smooth(5, 30 + k)
        )
        for k, name in enumerate(G_ts)
    ]


def _run(world, folder, *, contents=None, styles=None, settings=SETTINGS, **kw):
    """:func:`run_study` on the tiny world (batches of 3, read back 2 at a time)."""
    G_s, G_ts, default_contents = world
    contents = default_contents if contents is None else contents
    args = {"batch_size": BATCH, "read_batch": 2, "progress": False, **kw}
    return run_study(G_s, contents, styles or _styles(G_ts), IDENTITY, SPACES, settings, folder, **args)


def _in_memory(world) -> dict[str, dict[str, dict[str, float]]]:
    """Table III's scores the way notebook 12 computed them before streaming: every set in memory."""
    G_s, G_ts, contents = world
    proj = project_batch(
        G_s, contents, loss="mse", num_steps=5, seed=0, optimize_noise=False, w_space="w+", batch_size=BATCH,
        progress=False,
    )  # fmt: skip
    content_emb = IDENTITY.embed(contents)
    ci, si = pair_indices(N, S)
    lso_pairs = (ci[si < LSO_S], si[si < LSO_S])
    out = {}
    for k, (name, G_t) in enumerate(G_ts.items()):
        w_t = style_codes(G_t, S, seed=100 * k)
        lso_kwargs = {"num_steps": 2, "loss": "mse", "reg_weight": 1e-3, "seed": 0}
        sets = {
            "layer swap": stylize_pairs(G_s, G_t, proj.w, w_t, "layer_swap", batch_size=BATCH, progress=False),
            "lerp": stylize_pairs(G_s, G_t, proj.w, w_t, "lerp", batch_size=BATCH, progress=False),
            "lerp (LSO pairs)": stylize_pairs(
                G_s, G_t, proj.w, w_t, "lerp", pairs=lso_pairs, batch_size=BATCH, progress=False
            ),
            "lerp + LSO": stylize_pairs(
                G_s, G_t, proj.w, w_t, "lerp_lso", contents=contents, pairs=lso_pairs, lso_batch_size=BATCH,
                lso_kwargs=lso_kwargs, progress=False,
            ),
        }  # fmt: skip
        reference, floor = _smooth(5, 20 + k), _smooth(5, 30 + k)
        row = {"floor": {f"frechet {sp.name}": frechet_distance(sp.embed(floor), sp.embed(reference)) for sp in SPACES}}
        for method, st in sets.items():
            r = id_retrieval(content_emb, IDENTITY.embed(st.images), st.content_index)
            row[method] = {"top1": r["top1"], "n": r["n"], "top1_thresh": r["top1_thresh"]}
            for sp in SPACES:
                row[method][f"frechet {sp.name}"] = frechet_distance(sp.embed(st.images), sp.embed(reference))
        out[name] = {"row": row, "sets": sets}
    return {"proj": proj, "styles": out}


def test_study_from_disk_equals_in_memory(world, tmp_path):
    result = _run(world, tmp_path / "study")
    ref = _in_memory(world)
    assert torch.equal(result.projection.w, ref["proj"].w)
    assert result.computed == ["cartoon", "anime"] and result.chance == 1 / N
    top1s = {round(row[m]["top1"], 6) for row in result.results.values() for m in METHODS}
    assert len(top1s) >= 3, f"retrieval scores that can tell a wrong pairing: {top1s}"
    for name, expected in ref["styles"].items():
        got = result.results[name]
        assert set(got) == set(expected["row"]) == {"floor", "layer swap", "lerp", "lerp (LSO pairs)", "lerp + LSO"}
        for method, values in expected["row"].items():
            assert set(got[method]) == set(values), (name, method)
            for key, value in values.items():
                assert got[method][key] == pytest.approx(value, rel=1e-4, abs=1e-6), (name, method, key)
        assert got["lerp"]["n"] == N * S and got["layer swap"]["n"] == N * S and got["lerp + LSO"]["n"] == N * LSO_S
        sets = expected["sets"]
        shown = result.examples[name]
        torch.testing.assert_close(shown["lerp, style 2"], sets["lerp"].images[1:2])
        torch.testing.assert_close(shown["layer swap"], sets["layer swap"].images[0:1])
        torch.testing.assert_close(shown["lerp + LSO, style 1"], sets["lerp + LSO"].images[0:1], rtol=1e-4, atol=1e-4)
    # what is on disk: one layer-swap image per content, all lerp pairs, the LSO pairs with their mixed images
    assert len(list((tmp_path / "study" / "cartoon" / "layer_swap" / "items").iterdir())) == N
    assert len(list((tmp_path / "study" / "cartoon" / "lerp" / "items").iterdir())) == N * S
    assert (tmp_path / "study" / "metrics.jsonl").read_text().count("\n") == 2


def test_retrieval_per_pair_by_hand():
    contents = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    emb = torch.tensor([[0.8, 0.6], [0.8, 0.6], [0.0, -1.0]])
    got = retrieval_per_pair(contents, emb, torch.tensor([0, 1, 2]))
    # squared distances: rows 0 and 1 to contents (0.4, 0.8, 3.6); row 2 (2, 4, 2): a tie, argmin takes content 0
    assert got["hit"] == [1.0, 0.0, 0.0]
    assert got["margin"] == pytest.approx([0.8 - 0.4, 0.4 - 0.8, 2.0 - 2.0])
    assert [m > 0 for m in got["margin"]] == [h == 1.0 for h in got["hit"]]


def test_study_per_pair_records_match_the_set_scores(world, tmp_path):
    result = _run(world, tmp_path / "study")
    ci, si = pair_indices(N, S)
    for name, row in result.results.items():
        pairs = result.pairs[name]
        assert set(pairs) == {*METHODS, NO_CONTENT}
        for method in METHODS:
            p = pairs[method]
            assert len(p["hit"]) == len(p["margin"]) == len(p["content"]) == len(p["style"]) == row[method]["n"]
            assert np.mean(p["hit"]) == pytest.approx(row[method]["top1"])
            assert [m > 0 for m in p["margin"]] == [h == 1.0 for h in p["hit"]], (name, method)
        assert pairs["lerp"]["content"] == ci.tolist() and pairs["lerp"]["style"] == si.tolist()
        assert pairs["lerp + LSO"]["content"] == pairs["lerp (LSO pairs)"]["content"]
        assert set(pairs["lerp + LSO"]["style"]) == set(range(LSO_S))
        # the G_t samples carry no content: each is "retrieved" for exactly one content, so top-1 is chance
        control = pairs[NO_CONTENT]
        assert control["content"] == ci.tolist() and np.mean(control["hit"]) == pytest.approx(1 / N)
    again = _run(world, tmp_path / "study")  # read back from the folder: the same records
    assert again.computed == [] and again.pairs == result.pairs


def test_study_interrupted_resumes_without_recomputing(world, tmp_path):
    full = _run(world, tmp_path / "full")
    done: list[tuple[str, int, int]] = []

    def interrupt(stage: str, start: int, stop: int) -> None:
        done.append((stage, start, stop))
        if stage == "anime/lerp" and start > 0:  # the second style's second lerp batch
            raise Stop

    loads: list[str] = []
    folder = tmp_path / "resumed"
    with pytest.raises(Stop):
        _run(world, folder, on_chunk=interrupt, styles=_styles(world[1], loads))
    assert ("styles", 0, 1) in done and ("anime/lerp", 3, 6) in done and loads == ["cartoon", "anime"]
    seen: list[tuple[str, int, int]] = []
    loads.clear()
    resumed = _run(world, folder, on_chunk=lambda *a: seen.append(a), styles=_styles(world[1], loads))
    assert loads == ["anime"], "a finished style is read back, its G_t not even loaded"
    assert not set(seen) & set(done), f"recomputed {sorted(set(seen) & set(done))}"
    assert {s for s, _, _ in seen} == {"anime/lerp", "anime/lerp_lso", "styles"}
    assert ("anime/lerp", 6, 9) in seen and ("anime/lerp", 3, 6) not in seen
    assert resumed.computed == ["anime"] and resumed.results == full.results
    assert torch.equal(resumed.projection.w, full.projection.w)
    for name in full.examples:
        for label, img in full.examples[name].items():
            assert torch.equal(resumed.examples[name][label], img), (name, label)
    seen.clear()
    again = _run(world, folder, on_chunk=lambda *a: seen.append(a))
    assert seen == [] and again.computed == [] and again.results == full.results


def test_study_refuses_other_parameters(world, tmp_path):
    folder = tmp_path / "study"
    small = StudySettings(**{**SETTINGS.__dict__, "n_styles": 2, "lso_styles": 1})
    G_s, G_ts, contents = world
    one = {"cartoon": G_ts["cartoon"]}
    _run(world, folder, settings=small, styles=_styles(one))
    seen, loads = [], []
    cases = [
        ("lso_steps", dict(settings=StudySettings(**{**small.__dict__, "lso_steps": 3}), styles=_styles(one, loads))),
        ("styles", dict(settings=small, styles=_styles(one, loads, key_suffix="-retrained"))),
        ("contents", dict(settings=small, styles=_styles(one, loads), contents=contents.flip(0))),
        ("n_items", dict(settings=small, styles=_styles(G_ts, loads))),  # one more style
    ]
    for what, kw in cases:
        with pytest.raises(ResumeMismatchError, match=what):
            _run(world, folder, on_chunk=lambda *a: seen.append(a), **kw)
    assert seen == [] and loads == [], "refused before any computation"
    again = _run(world, folder, settings=small, styles=_styles(one, loads), on_chunk=lambda *a: seen.append(a))
    assert seen == [] and loads == [] and again.computed == []


def test_study_reads_contents_from_files(world, tmp_path):
    """Contents as image files (only a batch in memory): the same scores as from the tensor of those files."""
    G_s, G_ts, contents = world
    files = [save_image(contents[i : i + 1], tmp_path / "in" / f"{i}.png") for i in range(N)]
    source = ImageFiles(files, 32, min_short_side=32)
    quantised = source[0:N]
    small = StudySettings(**{**SETTINGS.__dict__, "n_styles": 2, "lso_styles": 1, "image_format": "png"})
    one = {"anime": G_ts["anime"]}
    from_files = _run(world, tmp_path / "a", settings=small, styles=_styles(one), contents=source)
    from_tensor = _run(world, tmp_path / "b", settings=small, styles=_styles(one), contents=quantised)
    assert from_files.results == from_tensor.results
    assert from_files.projection_psnr_db == pytest.approx(from_tensor.projection_psnr_db)
    assert sorted(p.suffix for p in (tmp_path / "a" / "anime" / "lerp_lso" / "items").iterdir()) == [
        ".npz", ".npz", ".npz", ".npz", ".png", ".png", ".png", ".png", ".png", ".png", ".png", ".png"
    ]  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Inception features from disk against torch-fidelity


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    """torch-fidelity's Inception-v3 with random weights (variance-keeping init), saved as a state dict."""
    pytest.importorskip("torch_fidelity")
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fe, "load_state_dict_from_url", lambda *a, **k: None)
        mp.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None)
        torch.manual_seed(0)
        model = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    path = tmp_path_factory.mktemp("inception") / "weights-inception-2015-12-05-6726825d.pth"
    torch.save(model.state_dict(), path)
    return path


def test_streamed_inception_fid_equals_torch_fidelity(inception_weights, tmp_path):
    from hrinv_nb.errors import CheckpointError
    from hrinv_nb.fid import InceptionFeatures, fid_from_features, inception_fid, inception_fid_images

    generated, reference = _smooth(4, 40) * 1.2, _smooth(3, 41)
    ref_dir = tmp_path / "ref"
    for i in range(3):
        save_image(reference[i : i + 1], ref_dir / f"{i}.png")
    inc = InceptionFeatures(inception_weights, batch_size=3)
    ref = inc.folder(ref_dir)
    assert ref.shape == (3, 2048) and ref.std() > 1e-3
    streamed = fid_from_features(inc.batches([generated[:3], generated[3:]], size=24), ref)
    expected = inception_fid_images(generated, ref_dir, weights=inception_weights, size=24)  # PNGs + torch-fidelity
    assert streamed == pytest.approx(expected, rel=1e-3) and expected > 0
    assert fid_from_features(ref, ref) == pytest.approx(0.0, abs=1e-6 * expected)
    assert inception_fid(ref_dir, ref_dir, weights=inception_weights) == pytest.approx(0.0, abs=1e-6 * expected)
    bad = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], bad)
    with pytest.raises(CheckpointError, match="state dict"):
        InceptionFeatures(bad)


def test_study_with_inception_fid(world, inception_weights, tmp_path):
    from hrinv_nb.fid import InceptionFeatures, inception_fid_images

    G_s, G_ts, contents = world
    ref_dir = tmp_path / "ref"
    reference = _smooth(3, 50)
    for i in range(3):
        save_image(reference[i : i + 1], ref_dir / f"{i:02d}.png")
    small = StudySettings(**{**SETTINGS.__dict__, "n_styles": 2, "lso_styles": 1, "fid_sizes": (32, 16)})
    style = StyleInputs("cartoon", lambda: G_ts["cartoon"], "tiny-cartoon", reference=reference, reference_dir=ref_dir)
    inc = InceptionFeatures(inception_weights, batch_size=8)
    result = _run(world, tmp_path / "study", settings=small, styles=[style], inception=inc, contents=contents[:2])
    row = result.results["cartoon"]
    assert all(np.isnan(v) for v in row["floor"].values())  # no second reference set given
    lerp = stylize_pairs(
        G_s, G_ts["cartoon"], result.projection.w, style_codes(G_ts["cartoon"], 2, seed=0), "lerp", progress=False
    )
    for size in (32, 16):
        expected = inception_fid_images(lerp.images, ref_dir, weights=inception_weights, size=size)
        assert row["lerp"][f"FID {size}"] == pytest.approx(expected, rel=1e-3)
    with pytest.raises(FileNotFoundError, match="reference folder"):
        missing = StyleInputs("anime", lambda: G_ts["anime"], "k", reference=reference, reference_dir=tmp_path / "nope")
        _run(world, tmp_path / "other", settings=small, styles=[missing], inception=inc)
    assert not (tmp_path / "other").exists(), "a missing FID folder stops the study before anything is written"
