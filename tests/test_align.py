"""Face alignment (hrinv_nb.align): the FFHQ recipe's geometry, the warp, and dlib on real and toy faces.

The geometry and warp tests need neither dlib nor its model. The detection tests need dlib
(``pip install 'hrinv_nb[align]'``) and dlib's 68-point landmark model (``apt-get install libdlib-data``,
or ``$HRINV_DLIB_LANDMARKS``), and are skipped, saying so, without them.
"""

from __future__ import annotations

import ast
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hrinv_nb import align
from hrinv_nb.align import AlignmentError, align_face, align_file, crop_quad, face_landmarks, ffhq_quad, find_predictor
from hrinv_nb.errors import HrinvError

MODEL = Path(os.environ.get(align.ENV_LANDMARKS) or align.DEFAULT_PREDICTOR)
requires_model = pytest.mark.skipif(
    not MODEL.is_file(),
    reason=f"dlib's landmark model not found at {MODEL}: apt-get install libdlib-data, or set HRINV_DLIB_LANDMARKS",
)


@pytest.fixture(scope="module")
def dlib_model() -> Path:
    pytest.importorskip("dlib", reason="dlib not installed: pip install 'hrinv_nb[align]'")
    return MODEL


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


# ----------------------------------------------------------------------------------------------------
# Pure geometry (no dlib)


def synthetic_landmarks(eye_left, eye_right, mouth_left, mouth_right) -> np.ndarray:
    """68 landmarks with every left-eye point at ``eye_left``, every right-eye point at ``eye_right``, the
    mouth corners at ``mouth_left`` / ``mouth_right``, and the rest at unrelated places (unused by the recipe)."""
    lm = np.random.default_rng(0).uniform(-500, 500, size=(68, 2))
    lm[36:42] = eye_left
    lm[42:48] = eye_right
    lm[48] = mouth_left
    lm[54] = mouth_right
    return lm


def eye_mouth(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(left eye centre, right eye centre, eye midpoint, eye-to-mouth vector) as the recipe computes them."""
    el, er = lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)
    eye_avg = (el + er) / 2
    return el, er, eye_avg, (lm[48] + lm[54]) / 2 - eye_avg


@pytest.mark.parametrize(
    "e, d, half",
    [
        (60.0, 50.0, 120.0),  # the eye distance sets the size: 2.0 * 60 > 1.8 * 50
        (40.0, 70.0, 126.0),  # the eye-to-mouth distance sets it: 1.8 * 70 > 2.0 * 40
    ],
)
def test_frontal_face_gives_the_recipes_axis_aligned_square(e, d, half):
    # Eyes level at y = 200 around x = 300, mouth straight below: eye_to_eye = (e, 0), eye_to_mouth = (0, d),
    # so x = (e, 0) - rot90((0, d)) = (e + d, 0) points right, its length becomes max(2e, 1.8d) = half,
    # y = (0, half) points down, and the centre is the eye midpoint moved down by 0.1 d.
    lm = synthetic_landmarks((300 - e / 2, 200), (300 + e / 2, 200), (280, 200 + d), (320, 200 + d))
    quad = ffhq_quad(lm)
    cx, cy = 300.0, 200.0 + 0.1 * d
    expected = [[cx - half, cy - half], [cx - half, cy + half], [cx + half, cy + half], [cx + half, cy - half]]
    np.testing.assert_allclose(quad, expected, atol=1e-9)


def rotation(theta: float) -> np.ndarray:
    return np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])


@pytest.mark.parametrize("theta_deg", [7.0, -30.0, 90.0, 160.0])
def test_quad_rotates_with_the_face(theta_deg):
    lm = synthetic_landmarks((270, 205), (335, 198), (285, 262), (328, 259))
    pivot = np.array([123.0, -45.0])
    r = rotation(np.radians(theta_deg))
    turned = (lm - pivot) @ r.T + pivot
    np.testing.assert_allclose(ffhq_quad(turned), (ffhq_quad(lm) - pivot) @ r.T + pivot, atol=1e-9)
    # The first edge (top-left -> top-right) of the turned quad points along the turned x axis.
    edge = ffhq_quad(turned)[3] - ffhq_quad(turned)[0]
    base = ffhq_quad(lm)[3] - ffhq_quad(lm)[0]
    angle = np.degrees(np.arctan2(edge[1], edge[0]) - np.arctan2(base[1], base[0]))
    assert (angle - theta_deg + 180) % 360 - 180 == pytest.approx(0, abs=1e-9)


@pytest.mark.parametrize("scale", [0.25, 3.0])
def test_quad_scales_and_translates_with_the_face(scale):
    lm = synthetic_landmarks((270, 205), (335, 198), (285, 262), (328, 259))
    shift = np.array([17.0, -4.5])
    np.testing.assert_allclose(ffhq_quad(lm * scale + shift), ffhq_quad(lm) * scale + shift, atol=1e-9)


def test_quad_is_a_square_and_refuses_bad_landmarks():
    quad = ffhq_quad(synthetic_landmarks((270, 205), (335, 198), (285, 262), (328, 259)))
    sides = [np.hypot(*(quad[(i + 1) % 4] - quad[i])) for i in range(4)]
    np.testing.assert_allclose(sides, sides[0], rtol=1e-12)
    np.testing.assert_allclose(np.hypot(*(quad[2] - quad[0])), sides[0] * np.sqrt(2), rtol=1e-12)
    with pytest.raises(HrinvError, match=r"\[68, 2\]"):
        ffhq_quad(np.zeros((5, 2)))
    with pytest.raises(HrinvError, match="finite"):
        ffhq_quad(np.full((68, 2), np.nan))


def _red_centroid(img: Image.Image) -> np.ndarray:
    a = np.asarray(img, dtype=np.float64)
    red = (a[..., 0] > 150) & (a[..., 1] < 90) & (a[..., 2] < 90)
    assert red.sum() > 3, "the red dot is missing from the output"
    ys, xs = np.nonzero(red)
    return np.array([xs.mean(), ys.mean()])


def test_crop_quad_maps_the_square_onto_the_output():
    # A rotated square of half-side 100 around (200, 210); a red dot at c + 0.5 x_hat*100 - 0.3 y_hat*100
    # must land at S/2 + (0.5, -0.3) * S/2 in the output.
    c, half, size = np.array([200.0, 210.0]), 100.0, 128
    xh = rotation(np.radians(25)) @ np.array([1.0, 0.0])
    yh = np.array([-xh[1], xh[0]])
    quad = np.stack([c - (xh + yh) * half, c + (-xh + yh) * half, c + (xh + yh) * half, c + (xh - yh) * half])
    canvas = np.full((420, 400, 3), 200, np.uint8)
    dot = c + (0.5 * xh - 0.3 * yh) * half
    yy, xx = np.mgrid[:420, :400]
    canvas[(xx + 0.5 - dot[0]) ** 2 + (yy + 0.5 - dot[1]) ** 2 <= 5**2] = (255, 0, 0)
    out = crop_quad(Image.fromarray(canvas), quad, size, transform_size=512)
    assert out.size == (size, size) and out.mode == "RGB"
    np.testing.assert_allclose(_red_centroid(out), size / 2 + np.array([0.5, -0.3]) * size / 2, atol=1.0)


def test_crop_quad_pads_outside_the_photo_unless_disabled():
    # The square sticks out of the photo on the left and the top.
    canvas = np.full((300, 300, 3), (90, 160, 60), np.uint8)
    quad = np.array([[-60.0, -60.0], [-60.0, 200.0], [200.0, 200.0], [200.0, -60.0]])
    padded = np.asarray(crop_quad(Image.fromarray(canvas), quad, 64, transform_size=256))
    bare = np.asarray(crop_quad(Image.fromarray(canvas), quad, 64, transform_size=256, enable_padding=False))
    assert padded.shape == bare.shape == (64, 64, 3)
    assert (bare[:5, :5] == 0).all(), "without padding, outside the photo is black"
    assert np.abs(padded.astype(int) - (90, 160, 60)).max() <= 2, "reflection of a flat photo stays flat"


@pytest.mark.parametrize("size, transform_size", [(100, 256), (300, 256)])
def test_crop_quad_any_output_size(size, transform_size):
    canvas = np.random.default_rng(1).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    quad = np.array([[50.0, 50.0], [50.0, 150.0], [150.0, 150.0], [150.0, 50.0]])
    assert crop_quad(Image.fromarray(canvas), quad, size, transform_size=transform_size).size == (size, size)
    with pytest.raises(HrinvError, match="size"):
        crop_quad(Image.fromarray(canvas), quad, 0)


# ----------------------------------------------------------------------------------------------------
# Finding dlib and its model (no dlib needed)


def test_module_imports_dlib_only_inside_functions():
    tree = ast.parse(Path(align.__file__).read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [a.name for n in top for a in n.names] + [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]
    assert not any(name.split(".")[0] in ("dlib", "scipy") for name in names), names


def test_missing_dlib_says_how_to_install(monkeypatch):
    align._detector.cache_clear()
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` raise ImportError
    try:
        with pytest.raises(AlignmentError, match=r"pip install 'hrinv_nb\[align\]'"):
            align._detector()
    finally:
        align._detector.cache_clear()


def test_missing_predictor_says_where_to_get_it(tmp_path, monkeypatch):
    missing = tmp_path / "nope" / "shape_predictor_68_face_landmarks.dat"
    with pytest.raises(AlignmentError) as err:
        find_predictor(missing)
    message = str(err.value)
    assert str(missing) in message and "libdlib-data" in message and "HRINV_DLIB_LANDMARKS" in message
    assert "--landmarks" in message and ".bz2" in message
    monkeypatch.setattr(align, "DEFAULT_PREDICTOR", missing)
    monkeypatch.delenv(align.ENV_LANDMARKS, raising=False)
    with pytest.raises(AlignmentError, match="libdlib-data"):
        find_predictor()


def test_predictor_search_order(tmp_path, monkeypatch):
    env_file, arg_file = tmp_path / "env.dat", tmp_path / "arg.dat"
    env_file.write_bytes(b"model")
    arg_file.write_bytes(b"model")
    monkeypatch.setenv(align.ENV_LANDMARKS, str(env_file))
    assert find_predictor() == env_file
    assert find_predictor(arg_file) == arg_file
    monkeypatch.setenv(align.ENV_LANDMARKS, str(tmp_path / "gone.dat"))
    with pytest.raises(AlignmentError, match="HRINV_DLIB_LANDMARKS"):
        find_predictor()
    compressed = tmp_path / "shape_predictor_68_face_landmarks.dat.bz2"
    compressed.write_bytes(b"BZh91AY&SY")
    with pytest.raises(AlignmentError, match="bunzip2"):
        find_predictor(compressed)


# ----------------------------------------------------------------------------------------------------
# dlib on real and toy faces


def eye_geometry(lm: np.ndarray) -> tuple[float, np.ndarray, float, float]:
    """(eye-line angle in degrees, eye midpoint, eye-to-mouth distance, eye-to-eye distance)."""
    el, er, eye_avg, e2m = eye_mouth(lm)
    angle = float(np.degrees(np.arctan2(er[1] - el[1], er[0] - el[0])))
    return angle, eye_avg, float(np.hypot(*e2m)), float(np.hypot(*(er - el)))


def to_aligned_frame(points: np.ndarray, quad: np.ndarray, size: int) -> np.ndarray:
    """Where the warp sends ``points``: the quad's top-left corner to (0, 0), its x edge along +x, side -> size."""
    x_edge, y_edge = quad[3] - quad[0], quad[1] - quad[0]
    side = np.hypot(*x_edge)
    rel = points - quad[0]
    return np.stack([rel @ x_edge, rel @ y_edge], axis=-1) / side**2 * size


def check_aligned_geometry(before: np.ndarray, after: np.ndarray, size: int) -> None:
    """Checks the re-detected landmarks ``after`` of an aligned ``size``² image against the recipe.

    Derivation. The warp is a similarity sending the crop square (side 2h, h = max(2.0 |eye_to_eye|,
    1.8 |eye_to_mouth|)) onto [0, S]², its centre c onto (S/2, S/2), with scale k = S / 2h. Since
    c = eye_avg + 0.1 eye_to_mouth, the aligned eye midpoint is (S/2, S/2) - 0.1 k eye_to_mouth', where
    eye_to_mouth' is eye_to_mouth turned into the aligned frame (nearly vertical: the recipe's x axis
    blends the eye line with the perpendicular of the mouth line): about S/2 - 0.1 k |eye_to_mouth| down
    from the top. The aligned eye-to-mouth distance is k |eye_to_mouth| <= S / 3.6, and the aligned
    eye distance k |eye_to_eye| <= S / 4, one of the two with equality. Expected values: the
    ``before`` landmarks sent through that similarity (:func:`to_aligned_frame`).
    Tolerances: dlib re-detects on a resampled image; on the astronaut and the toy renders the eye height
    came within 1.3 px (of 256) of both expectations and the eye-to-mouth distance within 3 %.
    """
    quad = ffhq_quad(before)
    expected_eyes = to_aligned_frame(eye_mouth(before)[2], quad, size)
    expected_e2m = float(np.hypot(*eye_mouth(before)[3])) * size / np.hypot(*(quad[3] - quad[0]))
    angle, eye_avg, e2m, e2e = eye_geometry(after)
    assert abs(angle) < 3.0, f"eye line tilted by {angle:.2f} deg"
    assert abs(eye_avg[0] - size / 2) < 0.03 * size, f"eye midpoint at x = {eye_avg[0]:.1f}, not centred"
    # The recipe's fixed values, in closed form ...
    assert eye_avg[1] == pytest.approx(size / 2 - 0.1 * e2m, abs=0.012 * size)
    assert max(2.0 * e2e, 1.8 * e2m) == pytest.approx(size / 2, rel=0.05)
    # ... and where the original landmarks predict them (1.2 % of the size, ~3 px at 256; 5 % for the distance).
    assert eye_avg[1] == pytest.approx(expected_eyes[1], abs=0.012 * size)
    assert e2m == pytest.approx(expected_e2m, rel=0.05)


@requires_model
def test_astronaut_aligns_to_the_recipes_geometry(dlib_model, astronaut, tmp_path):
    before = face_landmarks(astronaut, source="astronaut")
    assert before.shape == (68, 2) and before.dtype == np.float64
    # The astronaut's face (not the mission patch on her suit, a weak second detection at one upsampling).
    assert 170 < before[:, 0].mean() < 270 and 70 < before[:, 1].mean() < 190
    aligned = align_face(Image.fromarray(astronaut), size=256)
    assert aligned.size == (256, 256) and aligned.mode == "RGB"
    aligned.save(tmp_path / "astronaut_aligned.png")
    after = face_landmarks(np.asarray(aligned), source="aligned astronaut")
    check_aligned_geometry(before, after, 256)
    # Re-aligning an aligned face is (nearly) the identity: its quad is (nearly) the whole image.
    full = np.array([[0, 0], [0, 256], [256, 256], [256, 0]], dtype=np.float64)
    np.testing.assert_allclose(ffhq_quad(after), full, atol=0.02 * 256)


@requires_model
def test_large_photo_is_detected_downscaled_and_shrunk(dlib_model, astronaut):
    # 2560² (above DETECT_MAX_SIDE, and a crop > 4x the output, so the shrink step runs) gives the same face.
    big = Image.fromarray(astronaut).resize((2560, 2560), Image.LANCZOS)
    lm_big = face_landmarks(np.asarray(big), source="big")
    lm = face_landmarks(astronaut, source="small")
    np.testing.assert_allclose(ffhq_quad(lm_big) / 5.0, ffhq_quad(lm), atol=3.0)
    small_out = np.asarray(align_face(Image.fromarray(astronaut), 64, transform_size=256), dtype=np.float64)
    big_out = np.asarray(align_face(big, 64, transform_size=256), dtype=np.float64)
    assert np.abs(small_out - big_out).mean() < 12


@requires_model
def test_toy_renders_upscaled(dlib_model):
    from hrinv_nb.toy.render import render, sample_identity, sample_nuisance

    g = torch.Generator().manual_seed(0)  # the three faces the tolerances below were measured on
    renders = render(sample_identity(3, g), sample_nuisance(3, g), size=(128, 128))  # the toy world's resolution
    assert renders.shape == (3, 3, 128, 128) and renders.min() >= -1 and renders.max() <= 1
    big = torch.nn.functional.interpolate(renders, size=(256, 256), mode="bicubic", align_corners=False)
    arrays = ((big.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for i, array in enumerate(arrays):
        source = f"toy render {i}"
        try:
            before = face_landmarks(array, source=source)
        except AlignmentError as err:  # the toy faces are procedural: dlib may not see a face
            assert source in str(err)
            continue
        aligned = align_face(Image.fromarray(array), 256, transform_size=1024)
        check_aligned_geometry(before, face_landmarks(np.asarray(aligned), source=f"aligned {source}"), 256)


@requires_model
@pytest.mark.parametrize("kind", ["flat", "noise"])
def test_no_face_names_the_file(dlib_model, tmp_path, kind):
    rng = np.random.default_rng(3)
    array = np.full((256, 256, 3), 128, np.uint8) if kind == "flat" else rng.integers(0, 256, (256, 256, 3), np.uint8)
    path = tmp_path / f"{kind}.png"
    Image.fromarray(array).save(path)
    with pytest.raises(AlignmentError, match="no face") as err:
        align_face(path, 128)
    assert str(path) in str(err.value)


@requires_model
def test_missing_model_is_an_alignment_error(dlib_model, astronaut, tmp_path):
    with pytest.raises(AlignmentError, match="libdlib-data"):
        face_landmarks(astronaut, tmp_path / "missing.dat")
    junk = tmp_path / "junk.dat"
    junk.write_bytes(b"not a model")
    with pytest.raises(AlignmentError, match="junk.dat"):
        face_landmarks(astronaut, junk)


@requires_model
def test_two_faces_picks_the_larger_and_warns(dlib_model, astronaut):
    head = Image.fromarray(astronaut[0:300, 100:350])  # 250 x 300, the face only (no mission patch)
    canvas = Image.new("RGB", (1000, 700), (120, 120, 120))
    canvas.paste(head.resize((300, 360), Image.LANCZOS), (40, 300))  # face ~110 px
    canvas.paste(head.resize((500, 600), Image.LANCZOS), (450, 50))  # face ~180 px
    with pytest.warns(UserWarning, match=r"two heads: dlib found 2 faces; aligning the largest"):
        lm = face_landmarks(np.asarray(canvas), source="two heads")
    assert (lm[:, 0] > 450).all() and (lm[:, 1] < 650).all(), "landmarks not on the larger face"
    e2e = eye_geometry(lm)[3]
    assert e2e == pytest.approx(eye_geometry(face_landmarks(astronaut))[3] * 2.0, rel=0.1)


@requires_model
def test_align_file_writes_atomically_the_requested_size(dlib_model, astronaut, tmp_path):
    src, dst = tmp_path / "astronaut.png", tmp_path / "out" / "aligned.png"
    Image.fromarray(astronaut).save(src)
    assert align_file(src, dst, 200) == dst
    with Image.open(dst) as img:
        assert img.size == (200, 200) and img.mode == "RGB"
    assert sorted(p.name for p in dst.parent.iterdir()) == ["aligned.png"], "a temporary was left behind"
    # A failed alignment leaves the previous result untouched.
    before = dst.read_bytes()
    flat = tmp_path / "flat.png"
    Image.new("RGB", (200, 200), (50, 50, 50)).save(flat)
    with pytest.raises(AlignmentError, match="flat.png"):
        align_file(flat, dst, 200)
    assert dst.read_bytes() == before
    assert sorted(p.name for p in dst.parent.iterdir()) == ["aligned.png"]
    with pytest.raises(HrinvError, match="extension"):
        align_file(src, tmp_path / "aligned.xyz", 200)


@requires_model
def test_exif_rotated_jpeg_aligns_like_the_upright_one(dlib_model, astronaut, tmp_path):
    upright, rotated = tmp_path / "upright.jpg", tmp_path / "rotated.jpg"
    Image.fromarray(astronaut).save(upright, quality=95)
    # Stored turned a quarter counter-clockwise; orientation 6 tells viewers to turn it back clockwise.
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(astronaut).transpose(Image.ROTATE_90).save(rotated, quality=95, exif=exif)
    with Image.open(rotated) as raw:
        assert raw.size == (512, 512) and np.abs(np.asarray(raw, float) - astronaut).mean() > 20  # really turned
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # possible weak second detections are not the point here
        a = np.asarray(align_face(upright, 128, transform_size=512), dtype=np.float64)
        b = np.asarray(align_face(rotated, 128, transform_size=512), dtype=np.float64)
        with Image.open(rotated) as opened:  # an in-memory PIL image is turned upright too
            c = np.asarray(align_face(opened, 128, transform_size=512), dtype=np.float64)
    assert np.abs(a - b).mean() < 4.0
    assert np.abs(a - c).mean() < 4.0


@requires_model
def test_a_weak_detection_yields_to_a_confident_face(tmp_path, dlib_model, astronaut):
    """JPEG compression makes dlib also "find" the astronaut's mission patch (score ~0.07, larger than her face):
    the confident face must be the one aligned, whatever its size."""
    path = tmp_path / "astronaut.jpg"
    Image.fromarray(astronaut).save(path, quality=75)
    image = np.asarray(Image.open(path).convert("RGB"))
    points = face_landmarks(image, dlib_model, source=str(path))
    eyes = points[36:48].mean(axis=0)
    assert 170 <= eyes[0] <= 275 and 80 <= eyes[1] <= 175, f"aligned the wrong face: eye centre {eyes}"
