"""The ``hrinv`` command line on the toy world: invert (outputs, resume, kill, shards, bad inputs),
stylize (methods, resume, batching), evaluate (planted identities vs a shuffled control), --help."""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hrinv_nb.cli import build_parser, main
from hrinv_nb.cli import common as cli_common
from hrinv_nb.images import save_image
from hrinv_nb.projector import load_projection
from hrinv_nb.toy.world import TOY_NUM_WS, TOY_RESOLUTION, TOY_W_DIM

REPO = Path(__file__).resolve().parents[1]
FAST = ["--steps", "3", "--threads", "1", "--quiet"]


def _render_pngs(folder: Path, names: list[str], seed: int = 11) -> list[Path]:
    from hrinv_nb.toy.render import render_from_seed

    folder.mkdir(parents=True, exist_ok=True)
    images = render_from_seed(seed, len(names))
    return [save_image(images[i : i + 1], folder / f"{name}.png") for i, name in enumerate(names)]


def _snapshot(paths: list[Path]) -> dict[Path, tuple[bytes, int]]:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}


# ----------------------------------------------------------------------------------------------
# Listing, sorting, shards (pure functions)


def test_natural_sort_and_folder_listing(tmp_path):
    _render_pngs(tmp_path / "in", ["10", "2", "1", "b", "a10", "a9"])
    (tmp_path / "in" / ".hidden.png").write_bytes(b"x")
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    _render_pngs(tmp_path / "in" / "sub", ["0"])
    names = [p.name for p in cli_common.list_files([tmp_path / "in"])]
    assert names == ["1.png", "2.png", "10.png", "a9.png", "a10.png", "b.png"]  # not recursive, no hidden/txt
    again = cli_common.list_files([tmp_path / "in", tmp_path / "in" / "2.png"])
    assert len(again) == 6  # the same file twice counts once


def test_shard_parsing(monkeypatch):
    assert cli_common.parse_shard("1/3").select(7) == [1, 4]
    assert cli_common.parse_shard(None).select(3) == [0, 1, 2]
    for bad in ("2/2", "x", "1/0", "-1/2", "1/2/3"):
        with pytest.raises(cli_common.CliError):
            cli_common.parse_shard(bad)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    shard = cli_common.parse_shard("auto")
    assert (shard.index, shard.count, shard.local_rank) == (3, 4, 1)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(cli_common.CliError):
        cli_common.parse_shard("auto")


# ----------------------------------------------------------------------------------------------
# --help and bad inputs


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", ["invert", "stylize", "evaluate"])
def test_help_lists_every_option_with_its_default(command, capsys):
    assert main([command, "--help"]) == 0
    text = capsys.readouterr().out
    assert "Examples:" in text
    for action in _subparsers()[command]._actions:
        for option in action.option_strings:
            assert option in text, f"{option} missing from 'hrinv {command} --help'"
        if action.option_strings and action.dest != "help":
            assert "default" in action.help or action.required, f"{action.option_strings} states no default"
    if command == "invert":
        assert "torchrun --nproc_per_node=4 -m hrinv_nb.cli invert" in text and "--shard auto" in text


def test_top_level_help_and_usage_errors(capsys):
    assert main(["--help"]) == 0
    assert "invert" in capsys.readouterr().out
    assert main(["invert", "x.png"]) == 2  # --out missing: argparse's usage error
    assert main([]) == 2


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_bad_inputs_exit_2_naming_the_file(tmp_path, capsys):
    out = str(tmp_path / "out")
    missing = tmp_path / "nope.png"
    assert main(["invert", str(missing), "--out", out, *FAST]) == 2
    assert str(missing) in _error(capsys)

    text = tmp_path / "text.png"
    text.write_text("this is not an image")
    assert main(["invert", str(text), "--out", out, *FAST]) == 2
    assert str(text) in _error(capsys)

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["invert", str(empty), "--out", out, *FAST]) == 2
    assert str(empty) in _error(capsys)

    (img,) = _render_pngs(tmp_path / "in", ["a"])
    bad_g = tmp_path / "G.pkl"
    bad_g.write_bytes(b"\x80\x04garbage, not a pickle of networks")
    assert main(["invert", str(img), "--out", out, "--generator", str(bad_g), *FAST]) == 2
    assert str(bad_g) in _error(capsys)

    assert main(["invert", str(img), "--out", out, "--shard", "2/2", *FAST]) == 2
    assert "--shard" in _error(capsys)
    assert main(["invert", str(img), "--out", out, "--shard", "x", *FAST]) == 2
    assert "--shard" in _error(capsys)

    assert main(["invert", str(tmp_path / "in"), "--out", str(tmp_path / "in"), *FAST]) == 2
    assert "input folder" in _error(capsys)
    assert not (tmp_path / "out").exists()  # nothing written for refused inputs


def test_bad_input_traceback_only_with_debug(tmp_path, capsys):
    missing = str(tmp_path / "nope.png")
    assert main(["invert", missing, "--out", str(tmp_path / "o"), "--debug", *FAST]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_stem_collisions_are_refused(tmp_path, capsys):
    a = _render_pngs(tmp_path / "x", ["a"])[0]
    b = _render_pngs(tmp_path / "y", ["a"])[0]
    assert main(["invert", str(tmp_path / "x"), str(tmp_path / "y"), "--out", str(tmp_path / "o"), *FAST]) == 2
    err = _error(capsys)
    assert str(a) in err and str(b) in err


# ----------------------------------------------------------------------------------------------
# invert


def test_invert_two_images_then_rerun_skips_both(tmp_path, capsys):
    a, b = _render_pngs(tmp_path / "in", ["a", "b"])
    out = tmp_path / "out"
    assert main(["invert", str(b), str(a), "--out", str(out), *FAST]) == 0
    for stem in ("a", "b"):
        for ext in ("npz", "png", "json"):
            assert (out / f"{stem}.{ext}").is_file()
        w, noise = load_projection(out / f"{stem}.npz")
        assert (
            w.shape == (1, TOY_NUM_WS, TOY_W_DIM) and torch.isfinite(w).all() and noise
        )  # noise maps optimised (--noise)
        record = json.loads((out / f"{stem}.json").read_text())
        assert record["steps"] == 3 and record["options"]["loss"] == "vgg16_conv"
        assert record["options"]["lambda_scale"] == 1024 / TOY_RESOLUTION  # on the toy G_s
        assert record["source"] == str((tmp_path / "in" / f"{stem}.png").resolve())
        assert 0 < record["psnr"] < 100 and -1 <= record["ssim"] <= 1 and record["final_loss"] > 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["stem"] for line in lines] == ["a", "b"]  # sorted order, not argument order

    files = sorted(p for p in out.iterdir() if p.name != "metrics.jsonl")
    before = _snapshot(files)
    capsys.readouterr()
    assert main(["invert", str(a), str(b), "--out", str(out), "--steps", "3", "--threads", "1"]) == 0
    assert _error(capsys).count("skip ") == 2
    assert _snapshot(files) == before
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2

    assert main(["invert", str(a), "--out", str(out), "--steps", "4", "--threads", "1", "--quiet"]) == 2
    err = _error(capsys)
    assert "a.json" in err and "steps" in err and "--overwrite" in err
    assert main(["invert", str(a), "--out", str(out), "--steps", "4", "--overwrite", *FAST[2:]]) == 0
    assert json.loads((out / "a.json").read_text())["steps"] == 4


def test_invert_no_noise_and_video(tmp_path):
    (a,) = _render_pngs(tmp_path / "in", ["a"])
    out = tmp_path / "out"
    assert main(["invert", str(a), "--out", str(out), "--no-noise", "--video", *FAST]) == 0
    _, noise = load_projection(out / "a.npz")
    assert noise == {}
    from PIL import Image

    with Image.open(out / "a.webp") as video:
        assert (
            video.format == "WEBP" and video.n_frames >= 2 and video.size == (2 * TOY_RESOLUTION, TOY_RESOLUTION)
        )  # target | reconstruction


def test_shards_partition_a_folder(tmp_path):
    names = ["1", "2", "3", "10", "20"]
    _render_pngs(tmp_path / "in", names)
    out = tmp_path / "out"
    args = ["invert", str(tmp_path / "in"), "--out", str(out), "--steps", "1", "--threads", "1", "--quiet"]
    assert main([*args, "--shard", "0/2"]) == 0
    first = {p.stem for p in out.glob("*.npz")}
    assert first == {"1", "3", "20"}  # positions 0, 2, 4 of the natural order
    assert main([*args, "--shard", "1/2"]) == 0
    second = {p.stem for p in out.glob("*.npz")} - first
    assert second == {"2", "10"} and first.isdisjoint(second) and first | second == set(names)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["stem"] for line in lines] == names


def test_invert_resumes_after_sigkill(tmp_path):
    a, b = _render_pngs(tmp_path / "in", ["a", "b"])
    out = tmp_path / "out"
    args = ["invert", str(a), str(b), "--out", str(out), "--steps", "60", "--threads", "1", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "hrinv_nb.cli", *args], cwd=tmp_path, env=env)
    try:
        deadline = time.monotonic() + 300  # anti-hang bound only
        while not (out / "a.npz").exists():
            assert proc.poll() is None, f"the run ended (rc {proc.returncode}) before a.npz appeared"
            assert time.monotonic() < deadline, "a.npz never appeared"
            time.sleep(0.05)
        time.sleep(0.5)  # now inside b's 60 steps
        assert proc.poll() is None, "the run finished before it could be killed: raise --steps"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (out / "b.npz").exists()
    for path in (out / "b.png", out / "b.json"):  # anything at a final path is complete
        if path.exists():
            assert path.stat().st_size > 0
    a_files = [out / f"a.{ext}" for ext in ("npz", "png", "json")]
    before = _snapshot(a_files)
    assert main(args) == 0
    assert _snapshot(a_files) == before
    load_projection(out / "b.npz")
    assert json.loads((out / "b.json").read_text())["steps"] == 60
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_align_writes_the_aligned_input(tmp_path, monkeypatch):
    align = pytest.importorskip("hrinv_nb.align", reason="hrinv_nb.align (face alignment) is not there yet")
    from hrinv_nb.images import load_image

    calls = []

    def fake_align_file(src, dst, size=1024, predictor_path=None):  # no dlib or face needed
        calls.append((Path(src), Path(dst), size, predictor_path))
        return save_image(load_image(src, size=size), dst)

    monkeypatch.setattr(align, "align_file", fake_align_file)
    (a,) = _render_pngs(tmp_path / "in", ["a"])
    out = tmp_path / "out"
    assert main(["invert", str(a), "--out", str(out), "--align", "--landmarks", "x.dat", *FAST]) == 0
    assert calls == [(a, out / "a_aligned.png", TOY_RESOLUTION, "x.dat")]
    assert (out / "a_aligned.png").is_file()
    record = json.loads((out / "a.json").read_text())
    assert record["options"]["align"] is True and record["files"]["aligned"] == "a_aligned.png"


# ----------------------------------------------------------------------------------------------
# stylize


def test_stylize_lerp_two_by_two_is_resumable(tmp_path, capsys):
    a, b = _render_pngs(tmp_path / "in", ["a", "b"])
    inv = tmp_path / "inv"
    assert main(["invert", str(b), "--out", str(inv), "--no-noise", *FAST]) == 0
    out = tmp_path / "styl"
    args = ["stylize", str(a), str(inv / "b.npz"), "--styles", "samples:2", "--out", str(out), "--method", "lerp"]
    assert main([*args, *FAST]) == 0
    pairs = [f"{c}__sample{s:03d}" for c in ("a", "b") for s in range(2)]
    for name in pairs:
        assert (out / f"{name}.png").is_file() and (out / f"{name}.json").is_file()
        w, _ = load_projection(out / f"{name}.npz")
        assert w.shape == (1, TOY_NUM_WS, TOY_W_DIM)
    assert (out / "contents" / "a.npz").is_file()  # the photo was inverted into the cache; the .npz used as is
    assert not (out / "contents" / "b.npz").exists()
    record = json.loads((out / "a__sample000.json").read_text())
    assert record["method"] == "lerp" and record["options"]["target_generator"].endswith("G_t_cartoon.safetensors")
    files = sorted(out.rglob("*.*"))
    before = _snapshot(files)
    capsys.readouterr()
    assert main([*args, "--steps", "3", "--threads", "1"]) == 0
    assert "4 pairs done, 0 to do" in capsys.readouterr().err
    assert _snapshot(files) == before
    assert main([*args, "--steps", "3", "--threads", "1", "--quiet", "--method", "layer_swap"]) == 2
    assert "--overwrite" in _error(capsys)


def test_stylize_lerp_lso_independent_of_batching(tmp_path):
    (a,) = _render_pngs(tmp_path / "in", ["a"])
    common = ["stylize", str(a), "--styles", "samples:2", "--lso-steps", "2", *FAST]
    assert main([*common, "--out", str(tmp_path / "s8"), "--contents-cache", str(tmp_path / "cache")]) == 0
    assert (
        main([*common, "--out", str(tmp_path / "s1"), "--contents-cache", str(tmp_path / "cache"), "--batch-size", "1"])
        == 0
    )
    for style in ("sample000", "sample001"):
        w8, _ = load_projection(tmp_path / "s8" / f"a__{style}.npz")
        w1, _ = load_projection(tmp_path / "s1" / f"a__{style}.npz")
        mixed = json.loads((tmp_path / "s8" / f"a__{style}.json").read_text())
        assert mixed["method"] == "lerp_lso" and mixed["options"]["lso_steps"] == 2
        assert torch.equal(w8[:, 5:], w1[:, 5:])  # LSO moves rows 0-4 only
        # each pair starts from its own seeded offset whatever the batching; what differs is float summation
        # order. Adam's normalised step is at most about lr (0.05) per coordinate, whatever the gradient's
        # size, so a near-zero gradient whose sign flips with the summation order can move a coordinate
        # apart by up to 2·lr per step. Batching done wrong (pairs mixed, a wrong target) moves every
        # coordinate; rounding moves a few: almost all must agree to 1e-4, none beyond the Adam bound.
        diff = (w8 - w1).abs()[:, :5].flatten()
        assert diff.max() <= 2 * 0.05 * 2
        assert (diff > 1e-4).float().mean() < 0.1
    w_a, _ = load_projection(tmp_path / "s8" / "a__sample000.npz")
    w_b, _ = load_projection(tmp_path / "s8" / "a__sample001.npz")
    assert not torch.allclose(w_a, w_b)  # two styles, two results
    before = _snapshot(sorted((tmp_path / "s8").glob("*.*")))
    assert main([*common, "--out", str(tmp_path / "s8"), "--contents-cache", str(tmp_path / "cache")]) == 0
    assert _snapshot(sorted((tmp_path / "s8").glob("*.*"))) == before


# ----------------------------------------------------------------------------------------------
# evaluate


def _planted(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    from hrinv_nb.toy.render import render, sample_identity, sample_nuisance

    g = torch.Generator().manual_seed(5)
    identity = sample_identity(4, g)
    contents, stylized = tmp_path / "contents", tmp_path / "stylized"
    contents.mkdir()
    stylized.mkdir()
    photos = render(identity, sample_nuisance(4, g), "photo")
    for i in range(4):
        save_image(photos[i : i + 1], contents / f"face{i}.png")
    names = []
    for k, style in enumerate(("cartoon", "anime")):  # the same identities, other styles and nuisances
        images = render(identity, sample_nuisance(4, g), style)
        for i in range(4):
            save_image(images[i : i + 1], stylized / f"face{i}__{k}.png")
            names.append(f"face{i}__{k}.png")
    return contents, stylized, names


def test_evaluate_planted_identities_vs_shuffled_names(tmp_path, capsys):
    contents, stylized, names = _planted(tmp_path)
    report = tmp_path / "planted.json"
    assert main(["evaluate", "--contents", str(contents), "--stylized", str(stylized), "--out", str(report)]) == 0
    shown = capsys.readouterr()
    assert "ID retrieval top-1" in shown.out and "toy identity embedder" in shown.err
    planted = json.loads(report.read_text())
    assert planted["id_retrieval"]["n"] == 8 and planted["id_retrieval"]["chance"] == 0.25
    assert planted["id_retrieval"]["top1"] >= 0.85
    assert planted["fid"]["available"] is False and planted["fid"]["reason"]  # reported, not a crash

    # the control: the same images under shuffled names (each file now claims another face's source)
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(0)).tolist()
    for src, dst in zip(names, [names[p] for p in perm]):
        (shuffled / dst).write_bytes((stylized / src).read_bytes())
    report2 = tmp_path / "shuffled.json"
    assert main(["evaluate", "--contents", str(contents), "--stylized", str(shuffled), "--out", str(report2)]) == 0
    control = json.loads(report2.read_text())["id_retrieval"]["top1"]
    assert control <= 0.5 < planted["id_retrieval"]["top1"]

    # a --pairs CSV restores the true sources of the shuffled files
    csv_path = tmp_path / "pairs.csv"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["stylized", "content"])
        for src, dst in zip(names, [names[p] for p in perm]):
            writer.writerow([dst, src.split("__")[0] + ".png"])
    report3 = tmp_path / "pairs.json"
    args = ["evaluate", "--contents", str(contents), "--stylized", str(shuffled), "--pairs", str(csv_path)]
    assert main([*args, "--out", str(report3), "--quiet"]) == 0
    assert json.loads(report3.read_text())["id_retrieval"]["top1"] == planted["id_retrieval"]["top1"]


def test_evaluate_bad_inputs(tmp_path, capsys):
    contents, stylized, _ = _planted(tmp_path)
    assert main(["evaluate", "--contents", str(tmp_path / "none"), "--stylized", str(stylized)]) == 2
    assert str(tmp_path / "none") in _error(capsys)
    other = tmp_path / "other"
    _render_pngs(other, ["x__1"])
    assert main(["evaluate", "--contents", str(contents), "--stylized", str(other)]) == 2
    assert "__" in _error(capsys)
    assert main(["evaluate", "--contents", str(contents), "--stylized", str(stylized), "--crop", "psp"]) == 2
    assert "--arcface" in _error(capsys)


def test_psp_crop_and_content_prefix():
    from hrinv_nb.cli.evaluate import content_of, psp_crop

    assert psp_crop(torch.zeros(2, 3, 1024, 1024)).shape == (2, 3, 112, 112)
    assert content_of("a__b__style", ["a", "a__b", "c"]) == "a__b"  # the longest content stem wins
    assert content_of("ab__x", ["a"]) is None


def test_align_failure_is_a_clear_error(tmp_path, capsys):
    pytest.importorskip("hrinv_nb.align", reason="hrinv_nb.align (face alignment) is not there yet")
    (a,) = _render_pngs(tmp_path / "in", ["a"])  # a 64² toy render: no real face for dlib (or no dlib at all)
    assert main(["invert", str(a), "--out", str(tmp_path / "out"), "--align", *FAST]) == 2
    assert _error(capsys).strip()
    assert not (tmp_path / "out" / "a.npz").exists()


def test_evaluate_with_arcface_weights_and_fid(tmp_path, monkeypatch, arcface_weights):
    """The ArcFace path (a randomly initialised IR-SE-50 saved as a state dict) with the pSp crop, and FID
    through a stand-in torch-fidelity: one call per resolution on images resized to that size."""
    import types

    from PIL import Image

    import hrinv_nb.fid

    contents, stylized, _ = _planted(tmp_path)
    weights = arcface_weights
    inception = tmp_path / "inception.pth"
    inception.write_bytes(b"stand-in")
    calls = []

    def fake_fid(path_a, path_b, weights=None, cuda=None):
        sizes = {Image.open(p).size for p in [*Path(path_a).iterdir(), *Path(path_b).iterdir()]}
        calls.append((len(list(Path(path_a).iterdir())), len(list(Path(path_b).iterdir())), sizes, weights))
        return 12.5

    monkeypatch.setitem(sys.modules, "torch_fidelity", types.ModuleType("torch_fidelity"))
    monkeypatch.setattr(hrinv_nb.fid, "inception_fid", fake_fid)
    report = tmp_path / "arc.json"
    args = ["evaluate", "--contents", str(contents), "--stylized", str(stylized), "--arcface", str(weights)]
    args += ["--crop", "psp", "--inception", str(inception), "--fid-resolutions", "32", "80", "--out", str(report)]
    assert main([*args, "--quiet"]) == 0
    result = json.loads(report.read_text())
    assert result["embedder"].startswith("ArcFace IR-SE-50") and "pSp" in result["embedder"]
    assert result["id_retrieval"]["n"] == 8 and 0 <= result["id_retrieval"]["top1"] <= 1
    assert result["fid"]["available"] is True and result["fid"]["32"] == result["fid"]["80"] == 12.5
    assert calls == [(8, 4, {(32, 32)}, str(inception)), (8, 4, {(80, 80)}, str(inception))]
