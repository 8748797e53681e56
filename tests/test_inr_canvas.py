"""Canvas Style-INR (toy model v2): non-square outputs as wider scenes, canvas noise, projector, training."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_generator

import hrinv_nb
from hrinv_nb.inr import INRSynthesisNetwork, attach_inr_head, canvas_columns, canvas_const_noise, with_shape
from hrinv_nb.losses import perceptual_loss
from hrinv_nb.studies.nonsquare import render_shapes
from hrinv_nb.style_transfer import invert_nonsquare
from hrinv_nb.toy.inr_training import synthesis_with_noise, train_toy_inr


@pytest.fixture(scope="module")
def pair():
    G = tiny_generator(noise_strength=0.1)
    return attach_inr_head(G, seed=1), attach_inr_head(G, seed=1, canvas=True)


def _ws(G, n=2, seed=0):
    return G.mapping(torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed)), None)


def test_canvas_columns():
    assert [canvas_columns(s) for s in [(128, 128), (128, 192), (128, 256), (128, 384), (128, 64)]] == [4, 6, 8, 12, 4]
    assert canvas_columns((100, 130)) == 6  # the smallest even width >= 4a: the canvas always covers the output


def test_square_canvas_is_the_plain_path_bit_for_bit(pair):
    P, C = pair
    ws = _ws(P)
    with torch.no_grad():
        for mode in ("const", "none"):
            assert torch.equal(P.synthesis(ws, noise_mode=mode), C.synthesis(ws, noise_mode=mode))
        torch.manual_seed(3)
        a = P.synthesis(ws)
        torch.manual_seed(3)
        assert torch.equal(a, C.synthesis(ws))
        noise = {n: torch.randn(2, 1, h, w) for n, (h, w) in C.synthesis.noise_shapes().items()}
        assert torch.equal(P.synthesis(ws, noise=noise), C.synthesis(ws, noise=noise))
        # the per-sample noise path is the plain generator's with those maps as buffers
        src = tiny_generator(noise_strength=0.1)
        x, _ = src.synthesis.run_blocks(ws, "const")
        assert torch.equal(C.synthesis(ws, noise_mode="const"), C.synthesis.inr_net(x, (32, 32)))
        torch.testing.assert_close(
            synthesis_with_noise(src, ws, noise), C.synthesis(ws, noise=noise, return_ori_out=True)[1]
        )


def test_wide_outputs_extend_the_scene(pair):
    P, C = pair
    ws = _ws(P)
    with torch.no_grad():
        sq = C.synthesis(ws, noise_mode="const")
        for shape in [(32, 48), (32, 64), (32, 96), (16, 40)]:
            out, img = C.synthesis(ws, noise_mode="const", shape=shape, return_ori_out=True)
            cw = canvas_columns(shape)
            assert out.shape == (2, 3, *shape) and img.shape == (2, 3, 32, 8 * cw)
            assert torch.isfinite(out).all()
        wide = C.synthesis(ws, noise_mode="const", shape=(32, 96))
        assert torch.equal(wide, C.synthesis(ws, noise_mode="const", shape=(32, 96)))  # const noise is fixed
        # the centre third lies near the square image (same face, modulo the canvas's wider context) ...
        centre = (wide[..., 32:64] - sq).abs().mean()
        stretched = (P.synthesis(ws, noise_mode="const", shape=(32, 96))[..., 32:64] - sq).abs().mean()
        assert centre < stretched
        # ... and a tall output is exactly the centre crop of the square field
        tall = C.synthesis(ws, noise_mode="const", shape=(32, 16))
        torch.testing.assert_close(tall, sq[..., 8:24], atol=1e-5, rtol=1e-5)
        # random mode: fresh canvas-sized maps every call
        assert not torch.equal(C.synthesis(ws, shape=(32, 64)), C.synthesis(ws, shape=(32, 64)))


def test_noise_follows_the_feature_map_shape(pair):
    _, C = pair
    s = C.synthesis
    ws = _ws(C, n=3)
    shapes = s.noise_shapes((32, 96))
    assert shapes["b4.conv1.noise_const"] == (4, 12) and shapes["b32.conv1.noise_const"] == (32, 96)
    # the blocks themselves (random mode, networks.SynthesisLayer) draw noise of the canvas shape
    with torch.no_grad():
        x, img = None, None
        x = s.canvas_const(12, 3)
        for res, cur in zip(s.block_resolutions, s.block_ws(ws)):
            x, img = getattr(s, f"b{res}")(x, img, cur, noise_mode="random")
            assert x.shape[2:] == (res, 3 * res)
    # passed maps must have the canvas shape
    with pytest.raises(AssertionError):
        s(ws, shape=(32, 96), noise={"b32.conv1": torch.randn(3, 1, 32, 32)})
    with pytest.raises(KeyError):
        s(ws, shape=(32, 96), noise={"b99.conv1": torch.randn(3, 1, 32, 96)})
    buf = torch.randn(8, 8)
    wide = canvas_const_noise(buf, (8, 24), seed=5)
    assert torch.equal(wide[:, 8:16], buf) and torch.equal(wide, canvas_const_noise(buf, (8, 24), seed=5))
    assert canvas_const_noise(buf, (8, 8), seed=5) is buf


def test_canvas_round_trips_through_checkpoints(pair, tmp_path):
    P, C = pair
    assert "canvas" not in P.init_kwargs and C.init_kwargs["canvas"] is True
    again = hrinv_nb.load_networks(hrinv_nb.save_networks(tmp_path / "c.safetensors", G=C)).G
    assert isinstance(again.synthesis, INRSynthesisNetwork) and again.synthesis.canvas
    ws = _ws(C)
    with torch.no_grad():
        assert torch.equal(again.synthesis(ws, noise_mode="const", shape=(32, 64)),
                           C.synthesis(ws, noise_mode="const", shape=(32, 64)))  # fmt: skip
    plain = hrinv_nb.load_networks(hrinv_nb.save_networks(tmp_path / "p.safetensors", G=P)).G
    assert not plain.synthesis.canvas


def test_render_shapes_and_nonsquare_inversion_with_canvas_noise(pair):
    _, C = pair
    ws = _ws(C, n=1)
    out = render_shapes(C, ws, [(32, 32), (32, 96)])
    assert out[(32, 96)].shape == (1, 3, 32, 96)
    target = out[(32, 96)].clamp(-1, 1)
    res = invert_nonsquare(C, target, loss=perceptual_loss("mse"), num_steps=4, progress=False, w_avg_samples=100)
    assert res.image.shape == (1, 3, 32, 96)
    assert res.noise["b32.conv1.noise_const"].shape == (32, 96) and res.noise["b4.conv1.noise_const"].shape == (4, 12)
    with torch.no_grad():
        again = C.synthesis(res.w, noise_mode="const", shape=(32, 96), noise=res.noise)
        torch.testing.assert_close(again, res.image)
        torch.testing.assert_close(with_shape(C, (32, 96)).synthesis(res.w, noise=res.noise), res.image)


def _scene(z: torch.Tensor, size: tuple[int, int], noise: dict[str, torch.Tensor]) -> torch.Tensor:
    """A stand-in for the photo render: a disc on a z-coloured background, fine texture from the noise."""
    h, w = size
    rows = (torch.arange(h) + 0.5) / h * 2 - 1
    cols = ((torch.arange(w) + 0.5) / w * 2 - 1) * w / h
    rr, cc = torch.meshgrid(rows, cols, indexing="ij")
    disc = ((rr**2 + cc**2) < 0.4).float()
    img = torch.tanh(z[:, :3, None, None]) * 0.5 * (1 - disc) + torch.tanh(z[:, 3:6, None, None]) * 0.5 * disc
    assert noise["fine"].shape == (z.shape[0], 1, h, w) and noise["coarse"].shape == (z.shape[0], 1, h // 2, w // 2)
    return (img + 0.1 * noise["fine"]).clamp(-1, 1)


def test_train_toy_inr_learns_and_records(tmp_path):
    G_s = tiny_generator(noise_strength=0.05)
    G, rec = train_toy_inr(
        G_s, device="cpu", steps=40, time_budget_s=120, seed=0, batch=4, render_fn=_scene, log_every=20,
        eval_samples=4,
    )  # fmt: skip
    assert rec["steps"] == 40 and rec["seconds"] > 0 and set(rec["final_l1"]) == {"square_l1", "wide_l1"}
    assert rec["log"][-1]["square_l1"] < rec["log"][0]["square_l1"]
    assert set(rec["eval"]) == {"square_32x32_psnr_vs_G_s", "wide_32x48_psnr_vs_render", "wide_32x64_psnr_vs_render",
                                "wide_32x96_psnr_vs_render"}  # fmt: skip
    assert G.synthesis.canvas and not any(p.requires_grad for p in G.parameters())
    assert all(torch.equal(a, b) for a, b in zip(G.mapping.parameters(), G_s.mapping.parameters()))
    again = hrinv_nb.load_networks(hrinv_nb.save_networks(tmp_path / "inr.safetensors", G=G)).G
    assert again.synthesis.canvas
    _, rec0 = train_toy_inr(G_s, device="cpu", steps=5, time_budget_s=0.0, seed=0, batch=2, render_fn=_scene,
                            eval_samples=0)  # fmt: skip
    assert rec0["steps"] == 0 and rec0["eval"] == {}
    _, rec1 = train_toy_inr(G_s, device="cpu", steps=4, time_budget_s=None, seed=0, batch=2, render_fn=_scene,
                            wide_pool=0, eval_samples=0)  # fmt: skip
    assert rec1["steps"] == 4 and rec1["pool_sizes"] == {} and rec["pool_sizes"]["32x96"] > 0
