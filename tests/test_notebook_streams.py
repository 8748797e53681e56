"""The study helpers the notebooks use to read a long run's results the same way whether they were kept in
memory or streamed to a work folder (studies.reconstruction.StudyRow.image / row_dir,
studies.cross_domain.Inversions.image / iter_images, pair_image, iter_pair_images, pair_codes)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_generator

from hrinv_nb.gallery import StreamedStylized, Stylized, stylize_pairs
from hrinv_nb.studies import cross_domain as cd
from hrinv_nb.studies import reconstruction as study

OPTS = dict(num_steps=2, w_avg_samples=300, progress=False, seed=5)
LSO_KW = {"num_steps": 2, "loss": "mse", "seed": 3, "rows": (1, 2), "reg_weight": 1e-3, "init_scale": 0.5}


@pytest.fixture(scope="module")
def G():
    return tiny_generator(noise_strength=0.3)


def _targets(n: int) -> torch.Tensor:
    return (torch.rand([n, 3, 32, 32], generator=torch.Generator().manual_seed(7)) * 1.6 - 0.8).float()


def test_row_images_and_folders(G, tmp_path):
    targets = _targets(3)
    row = study.run_row("mse in32", G, targets, "mse", batch_size=2, **OPTS)
    out = study.row_dir(tmp_path, "Image2StyleGAN++, optim(w, n) in32")
    assert out == tmp_path / "Image2StyleGAN++_optim_w_n_in32"
    assert study.row_dir(None, "x") is None
    streamed = study.run_row("mse in32", G, targets, "mse", batch_size=2, out_dir=out, **OPTS)
    assert row.images is not None and streamed.images is None
    assert len(row) == len(streamed) == 3
    for i in range(3):
        assert torch.equal(row.image(i), row.images[i : i + 1])
        # the stream keeps float images: what is read back is what was computed
        assert torch.allclose(streamed.image(i), row.image(i), atol=1e-6)
    with pytest.raises(AssertionError):
        study.row_dir(tmp_path, " ,; ")


def test_inversions_read_alike_from_memory_and_from_disk(G, tmp_path):
    targets = _targets(3)
    kw = dict(loss="mse", num_steps=2, progress=False, batch_size=2)
    inv = cd.invert_contents(G, targets, **kw)
    inv_s = cd.invert_contents(G, targets, out_dir=tmp_path / "inv", **kw)
    assert len(inv) == len(inv_s) == 3 and inv_s.images is None
    batches = list(inv_s.iter_images(2))
    assert [b.shape[0] for b in batches] == [2, 1]
    assert torch.allclose(torch.cat(batches), inv.images, atol=1e-6)
    assert torch.allclose(torch.cat(list(inv.iter_images(16))), inv.images)
    assert torch.allclose(inv_s.image(2), inv.images[2:3], atol=1e-6)


def test_pairs_read_alike_from_memory_and_from_disk(tmp_path):
    G_s, G_t = tiny_generator(seed=1), tiny_generator(seed=2)
    with torch.no_grad():
        w_s = G_s.mapping(torch.randn(2, G_s.z_dim, generator=torch.Generator().manual_seed(2)), None)
        contents = G_s.synthesis(w_s, noise_mode="const") / 20
        w_t = G_t.mapping(torch.randn(3, G_t.z_dim, generator=torch.Generator().manual_seed(3)), None)
    kw = dict(contents=contents, lso_kwargs=LSO_KW, lso_batch_size=6, progress=False)
    mem = stylize_pairs(G_s, G_t, w_s, w_t, "lerp_lso", **kw)
    disk = stylize_pairs(G_s, G_t, w_s, w_t, "lerp_lso", out_dir=tmp_path / "pairs", **kw)
    assert isinstance(mem, Stylized) and isinstance(disk, StreamedStylized)
    seen = []
    for (a0, a1, am, ai), (b0, b1, bm, bi) in zip(cd.iter_pair_images(mem, 4), cd.iter_pair_images(disk, 4)):
        assert (a0, a1) == (b0, b1) and am.shape == bm.shape == ai.shape == (a1 - a0, 3, 32, 32)
        assert torch.allclose(am, bm, atol=1e-6) and torch.allclose(ai, bi, atol=1e-6)
        assert not torch.equal(ai, am)  # after LSO is not before LSO
        seen.append((a0, a1))
    assert seen == [(0, 4), (4, 6)]
    for key in ("image", "mixed"):
        assert torch.allclose(cd.pair_image(mem, 5, key), cd.pair_image(disk, 5, key), atol=1e-6)
    (w, w_m), (dw, dw_m) = cd.pair_codes(mem), cd.pair_codes(disk)
    assert torch.allclose(w, dw, atol=1e-6) and torch.allclose(w_m, dw_m, atol=1e-6)
    assert w.shape == (6, G_s.num_ws, G_s.w_dim) and not torch.equal(w, w_m)
