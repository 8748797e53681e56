"""The ``paper`` preset of every notebook, end to end through the main job, on real-format files.

Small files in the real formats (``tests/realformat.py``: NVIDIA snapshot pickles, timm / torchvision VGG16,
timm ResNet50 and DeiT-S, NVIDIA's TorchScript LPIPS, TreB1eN's IR-SE-50, torch-fidelity's Inception, a
CelebA-HQ-named folder and style data sets) are built once per session in a temporary folder; the
``HRINV_*`` variables point at them and nothing else (no other ``HRINV_*`` variable, an empty torch hub
cache). Each notebook then runs as ``python -m hrinv_nb.notebook.mainjob --preset paper --only NN`` with
tiny overrides (two or three items, three steps, sizes that fit a 64² generator); every other value is the
preset's; each run must end with its figure and record, with the preset's values, and read folders in
numeric order. A second run with the FFHQ snapshot (14: the Style-INR snapshot) missing checks that every
preset that reads files stops in its configuration cell, before any computation, with an error naming the
variable and the path; a third that 02 and 11 report the LPIPS metric unavailable without its weights.

Runs go two at a time (``HRINV_PRESET_WORKERS``), the longest first; a cell may take ``CELL_TIMEOUT_S``.
Notebooks known to fail a check are ``xfail(strict=True)`` with the diagnosis (``KNOWN_FAILURES``,
``NOT_FAIL_FAST``), so a fix shows up as a failure until the entry is removed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import realformat as rf
import yaml

pytest.importorskip("papermill", reason="the paper-preset runs need papermill (the test extra)")
HAVE_TORCH_FIDELITY = importlib.util.find_spec("torch_fidelity") is not None
NO_FID = "12's paper preset computes the real FID, which needs torch-fidelity (pip install 'hrinv_nb[fid]')"

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "notebooks" / "params" / "paper"
NOTEBOOKS = sorted(p.stem for p in PAPER.glob("[0-9][0-9]_*.yaml"))
CELL_TIMEOUT_S = 600
RUN_TIMEOUT_S = 1200
WORKERS = max(1, int(os.environ.get("HRINV_PRESET_WORKERS", "2")))

# The tiny overrides: items, steps (three: some notebooks assert that a projection loss decreased, which
# the first two steps of NVIDIA's schedule need not do), and sizes for a 64² generator; every other value is the preset's.
OVERRIDES: dict[str, dict[str, Any]] = {
    "00_quickstart": {"num_steps": 3, "lso_steps": 3},
    "01_downsampling_artifacts": {"num_steps": 3, "downsample_size": 32, "slider_sizes": [48], "crop_size": 32},
    "02_perceptual_loss_table": {"num_images": 3, "num_steps": 3, "downsample_size": 32},
    "03_w_vs_noise": {"num_steps": 3},
    "04_discriminator_layerwise": {"num_steps": 3},
    "05_noise_style_transfer": {"num_steps": 3},
    "06_cost_table": {
        "hires_resolution": 64,
        "hires_steps": 2,
        "toy_inversion_steps": 3,
        "toy_lso_steps": 3,
        "generation_repeats": 1,
        "hires_timeout": 300,
    },
    "07_cross_domain_mixing": {
        "num_contents": 2,
        "num_styles": 2,
        "num_steps": 3,
        "lso_steps": 3,
        "swap_blocks": [16, 32],
    },
    "08_lso_loss_layers": {"num_contents": 2, "num_styles": 2, "num_steps": 3, "lso_steps": 3, "mask_dilation": 2},
    "09_lso_local_optimization": {"num_contents": 2, "num_styles": 2, "num_steps": 3, "lso_steps": 3},
    "10_direction_constraints": {"num_contents": 2, "num_styles": 2, "num_steps": 3, "lso_steps": 3},
    "11_lso_scatter": {"n_contents": 3, "n_styles": 2, "proj_steps": 3, "lso_steps": 3},
    # 12 computes 2 x 4 real FIDs per style (torch-fidelity: eigenvalues of a 2048² matrix, ~3 s each here);
    # its three styles stay (the only reader of the caricature and anime variables), with fewer pairs.
    "12_id_retrieval": {
        "n_contents": 2,
        "n_styles": 1,
        "proj_steps": 3,
        "lso_steps": 3,
        "lso_styles": 1,
        "n_reference": 3,
    },
    "13_reference_quality": {"n_refs": 2, "n_contents": 2, "proj_steps": 3, "lso_steps": 3, "blur_sigmas": [0.0, 4.0]},
    "14_style_inr_nonsquare": {
        "shapes": [[64, 64], [128, 128], [64, 128]],
        "wide_size": [64, 128],
        "num_steps": 3,
        "pano_size": [64, 192],
        "pano_steps": 3,
        "n_samples": 3,
    },
    "15_toy_world": {"n_measure": 2, "n_spectrum": 2},
}
# Notebooks that fail on real-format files, with the diagnosis (strict: a fix makes the test fail until removed).
KNOWN_FAILURES: dict[str, str] = {}
# Notebooks whose paper preset does not stop in the configuration cell when a required file is missing.
NOT_FAIL_FAST: dict[str, str] = {}
STREAMS_CONTENT_FILES = {"02_perceptual_loss_table", "11_lso_scatter", "12_id_retrieval"}  # manifests list them
NEEDS_NO_FILES = {"06_cost_table"}  # random 1024² networks and the toy world's timings: no variable to miss


# ------------------------------------------------------------------------------------------------ assets


@pytest.fixture(scope="session")
def real_assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Build every real-format file once; return the ``HRINV_*`` variables that point at them."""
    root = tmp_path_factory.mktemp("realformat")
    G_s = rf.source_networks(seed=0)
    env = {
        "HRINV_FFHQ_PKL": rf.nvidia_pickle(root / "ffhq-res1024-mirror-stylegan2-noaug.pkl", G_s),
        "HRINV_STYLE_INR_PKL": rf.nvidia_pickle(root / "style-inr-gan-ffhq.pkl", rf.style_inr_networks(G_s)),
        "HRINV_VGG16_WEIGHTS": rf.timm_vgg16(root / "vgg16.tv_in1k.safetensors"),
        "HRINV_RESNET50_WEIGHTS": rf.timm_resnet50(root / "resnet50.a1_in1k.safetensors"),
        "HRINV_DEIT_S16_WEIGHTS": rf.timm_deit_s16(root / "deit_small_patch16_224.safetensors"),
        "HRINV_TORCHVISION_VGG16": rf.torchvision_vgg16(root / "vgg16-397923af.pth"),
        "HRINV_LPIPS_VGG16_PT": rf.lpips_torchscript(root / "vgg16.pt"),
        "HRINV_ARCFACE_WEIGHTS": rf.arcface_ir_se50(root / "model_ir_se50.pth"),
        "HRINV_CELEBAHQ_DIR": rf.numbered_folder(root / "CelebA-HQ-img", 12, seed=0),
        "HRINV_CONTENT_IMAGE": rf.write_image(root / "face.jpg", rf.face_like(160, 160, seed=1)),
        "HRINV_STYLE_IMAGE": rf.write_image(root / "painting.png", rf.face_like(128, 128, seed=2)),
        "HRINV_WIDE_IMAGE": rf.write_image(root / "wide_face.jpg", rf.face_like(96, 192, seed=3)),
        "HRINV_PANORAMA_IMAGE": rf.write_image(root / "panorama.jpg", rf.face_like(80, 240, seed=4)),
    }
    if HAVE_TORCH_FIDELITY:  # torch-fidelity's Inception-v3 class builds the file (the fid extra)
        env["HRINV_INCEPTION_WEIGHTS"] = rf.inception_weights(root / "weights-inception-2015-12-05-6726825d.pth")
    for k, style in enumerate(("cartoon", "caricature", "anime")):
        env[f"HRINV_G_T_{style.upper()}_PKL"] = rf.nvidia_pickle(root / f"G_t_{style}.pkl", rf.fine_tuned(G_s, 100 + k))
    for k, name in enumerate(("DISNEY", "CARICATURE", "ANIME")):
        env[f"HRINV_{name}_DIR"] = rf.numbered_folder(root / name.lower(), 5, seed=10 + k, suffix=".png")
    return {name: str(path) for name, path in env.items()}


def preset_variables() -> set[str]:
    """Every ``$HRINV_*`` variable the paper presets name."""
    found: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, str) and value.startswith("$HRINV_"):
            found.add(value[1:].strip("{}"))
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for nb in NOTEBOOKS:
        for value in (yaml.safe_load((PAPER / f"{nb}.yaml").read_text()) or {}).values():
            walk(value)
    return found


def test_every_preset_variable_has_a_real_format_file(real_assets):
    missing = preset_variables() - set(real_assets) - (set() if HAVE_TORCH_FIDELITY else {"HRINV_INCEPTION_WEIGHTS"})
    assert not missing, f"variables of the paper presets without a real-format file here: {sorted(missing)}"
    for name, path in real_assets.items():
        assert Path(path).exists(), (name, path)
    celeb = sorted(p.name for p in Path(real_assets["HRINV_CELEBAHQ_DIR"]).iterdir())
    assert "10.jpg" in celeb and "2.jpg" in celeb  # a text sort would put 10.jpg before 2.jpg


def test_real_format_files_load_as_the_package_reads_them(real_assets):
    import torch

    import hrinv_nb
    from hrinv_nb.identity import load_arcface
    from hrinv_nb.losses import perceptual_loss

    nets = hrinv_nb.load_networks(real_assets["HRINV_FFHQ_PKL"])
    assert nets.meta["format"] == "pickle" and nets.D is not None and nets.G.img_resolution == rf.RESOLUTION
    assert nets.meta["snapshot_keys"] == ["D", "G", "G_ema", "augment_pipe", "training_set_kwargs"]
    inr = hrinv_nb.load_networks(real_assets["HRINV_STYLE_INR_PKL"]).G
    assert isinstance(inr.synthesis, hrinv_nb.inr.INRSynthesisNetwork)
    x = torch.rand(1, 3, rf.RESOLUTION, rf.RESOLUTION, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for name, var in (("vgg16_conv", "HRINV_VGG16_WEIGHTS"), ("resnet50", "HRINV_RESNET50_WEIGHTS")):
        loss = perceptual_loss(name, weights=real_assets[var])
        loss.set_target(x)
        assert loss(x).item() == 0.0 and loss(-x).item() > 0.0
    assert load_arcface(real_assets["HRINV_ARCFACE_WEIGHTS"])(torch.zeros(1, 3, 112, 112)).shape == (1, 512)


# --------------------------------------------------------------------------------------------- main job


@dataclass
class MainJobRun:
    """One main-job run of one notebook: the command's result and where its files went."""

    notebook: str
    returncode: int
    output: str
    run_dir: Path
    figures_dir: Path
    seconds: float
    parameters: dict[str, Any]  # everything given with -p

    @property
    def executed(self) -> dict[str, Any]:
        return json.loads((self.run_dir / f"{self.notebook}.ipynb").read_text(encoding="utf-8"))

    @property
    def summary(self) -> dict[str, Any]:
        return json.loads((self.run_dir / "summary.json").read_text(encoding="utf-8"))


def declared_parameters(notebook: str) -> dict[str, Any]:
    from hrinv_nb.notebook import config

    return config.read_parameters_cell(REPO / "notebooks" / f"{notebook}.ipynb")


def job_environment(variables: Mapping[str, str], home: Path) -> dict[str, str]:
    """The environment of a run: this one without any ``HRINV_*`` variable, plus ``variables``; one thread,
    a private (empty) torch hub cache, a headless matplotlib."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HRINV_")}
    home.mkdir(parents=True, exist_ok=True)
    env.update(variables)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TORCH_HOME=str(home), MPLBACKEND="Agg")
    return env


def run_mainjob(notebook: str, variables: Mapping[str, str], out: Path, overrides: Mapping[str, Any]) -> MainJobRun:
    """``python -m hrinv_nb.notebook.mainjob --preset paper --only <notebook>`` with ``overrides`` (``-p``),
    figures (and any work folder) under ``out``; the CPU, one thread. A run past ``RUN_TIMEOUT_S`` is
    killed with its kernel (its own process group) and fails the test."""
    declared = declared_parameters(notebook)
    figures = out / "figures"
    params: dict[str, Any] = {"device": "cpu", "threads": 1, "figures_dir": str(figures), **overrides}
    if "work_dir" in declared:  # never the repository's runs/work/
        params["work_dir"] = str(out / "work")
    cmd = [sys.executable, "-m", "hrinv_nb.notebook.mainjob", "--preset", "paper", "--only", notebook]
    cmd += ["--run-dir", str(out / "run"), "--cell-timeout", str(CELL_TIMEOUT_S)]
    for name, value in params.items():
        cmd += ["-p", name, repr(value)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=job_environment(variables, out / "torch_home"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"{notebook}: the main job ran past {RUN_TIMEOUT_S} s and was killed:\n{output[-3000:]}")
    seconds = time.perf_counter() - t0
    return MainJobRun(notebook, proc.returncode, output, out / "run", figures, seconds, params)


# What each test runs: the preset as it is (with the tiny overrides), with the FFHQ snapshot (14: the Style-INR
# snapshot) missing, or with the optional LPIPS weights missing.
GONE = ("HRINV_FFHQ_PKL", "HRINV_STYLE_INR_PKL")
OPTIONAL = ("HRINV_LPIPS_VGG16_PT", "HRINV_TORCHVISION_VGG16")
KIND_OF_TEST = {
    "test_paper_preset_runs_end_to_end": "paper",
    "test_missing_file_stops_in_the_configuration_cell": "missing",
    "test_missing_optional_weights_are_reported_unavailable": "optional",
}
# Seconds a run took here (2 loaded cores): the longest start first, so that two workers finish together.
EXPECTED_S = {"12_id_retrieval": 150, "06_cost_table": 50, "10_direction_constraints": 45}


class Runs:
    """The main-job runs of the selected tests (so ``-k`` runs only those), ``WORKERS`` at a time, all started
    on first use, the longest first; :meth:`get` waits for one."""

    def __init__(self, start: Callable[[str, str], MainJobRun], wanted: list[tuple[str, str]]) -> None:
        self._start, self._futures = start, {}
        self._wanted = sorted(wanted, key=lambda case: -EXPECTED_S.get(case[1], 20) * (case[0] != "missing"))
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def get(self, kind: str, notebook: str) -> MainJobRun:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=WORKERS)
                for case in self._wanted:
                    self._futures[case] = self._pool.submit(self._start, *case)
            if (kind, notebook) not in self._futures:
                self._futures[(kind, notebook)] = self._pool.submit(self._start, kind, notebook)
        return self._futures[(kind, notebook)].result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="session")
def mainjob_runs(request, real_assets, tmp_path_factory):
    root = tmp_path_factory.mktemp("mainjob")
    gone = {var: str(root / "gone" / Path(real_assets[var]).name) for var in GONE}  # files that are not there
    optional_gone = {k: v for k, v in real_assets.items() if k not in OPTIONAL}

    def start(kind: str, notebook: str) -> MainJobRun:
        variables = {"paper": real_assets, "missing": {**real_assets, **gone}, "optional": optional_gone}[kind]
        return run_mainjob(notebook, variables, root / kind / notebook, OVERRIDES[notebook])

    wanted = [
        (KIND_OF_TEST[item.originalname], item.callspec.params["notebook"])
        for item in request.session.items
        if getattr(item, "originalname", None) in KIND_OF_TEST and hasattr(item, "callspec")
    ]
    runs = Runs(start, wanted)
    yield runs
    runs.close()


def _param(notebook: str, known: Mapping[str, str]) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=known[notebook])] if notebook in known else []
    return pytest.param(notebook, marks=marks, id=notebook[:2])


def cell_errors(executed: Mapping[str, Any]) -> list[tuple[int, str, str]]:
    """``(cell index, exception name, message)`` of every error output of an executed notebook."""
    return [
        (i, out.get("ename", ""), out.get("evalue", ""))
        for i, cell in enumerate(executed["cells"])
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]


def text_outputs(executed: Mapping[str, Any]) -> str:
    """Everything the executed notebook printed (streams and text results)."""
    parts = []
    for cell in executed["cells"]:
        for out in cell.get("outputs", []):
            text = out.get("text") or out.get("data", {}).get("text/plain", "")
            parts.append("".join(text) if isinstance(text, list) else str(text))
    return "\n".join(parts)


def listed_image_files(work: Path) -> list[list[str]]:
    """The file lists (names) of every image-folder fingerprint in the manifests of a work folder."""
    found: list[list[str]] = []

    def walk(value: object) -> None:
        if isinstance(value, dict):
            files = value.get("files")
            if isinstance(files, list) and files and all(isinstance(f, list) and f for f in files):
                found.append([str(f[0]) for f in files])
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for manifest in sorted(work.rglob("manifest.json")) if work.is_dir() else []:
        walk(json.loads(manifest.read_text(encoding="utf-8")))
    return found


def assert_completed(run: MainJobRun) -> dict[str, Any]:
    """The run exited 0, ran every cell without an error and wrote its figure and record; returns the record."""
    from hrinv_nb.notebook.report import check_figure

    assert run.returncode == 0, f"{run.notebook} failed ({run.seconds:.0f} s):\n{run.output[-3000:]}"
    assert run.summary["status"] == "ok" and run.summary["completed"] == [f"{run.notebook}.ipynb"], run.summary
    executed = run.executed
    assert not cell_errors(executed)
    code = [c for c in executed["cells"] if c["cell_type"] == "code"]
    assert all(c.get("execution_count") for c in code), "every code cell ran"
    png, js = run.figures_dir / f"{run.notebook}.png", run.figures_dir / f"{run.notebook}.json"
    assert png.stat().st_size > 0 and js.stat().st_size > 0
    record = check_figure(png, js)  # the record names the PNG's hash
    assert record["notebook"] == run.notebook and record["device"] == "cpu"
    return record


@pytest.mark.parametrize("notebook", [_param(nb, KNOWN_FAILURES) for nb in NOTEBOOKS])
def test_paper_preset_runs_end_to_end(notebook, mainjob_runs):
    if notebook.startswith("12") and not HAVE_TORCH_FIDELITY:
        pytest.skip(NO_FID)
    run = mainjob_runs.get("paper", notebook)
    record = assert_completed(run)
    # The preset's values reached the notebook; ours (-p) only where we overrode them.
    preset = yaml.safe_load((PAPER / f"{notebook}.yaml").read_text())
    used = record["parameters"]
    assert used["preset"] == "paper"
    for name, value in {**preset, **run.parameters}.items():
        assert used[name] == value, (name, used[name], value)
    assert "the toy world" not in text_outputs(run.executed), "a paper run must not fall back on the toy assets"
    # Folders are read in numeric order (CelebA-HQ's 0.jpg, 1.jpg, 2.jpg, ..., not 0, 1, 10, ...): the streamed
    # notebooks' manifests name the files they read.
    work = Path(run.parameters["work_dir"]) if "work_dir" in run.parameters else None
    listed = listed_image_files(work) if work else []
    for names in listed:
        if all(Path(n).stem.isdigit() for n in names):
            assert [int(Path(n).stem) for n in names] == list(range(len(names))), names
    if notebook in STREAMS_CONTENT_FILES:
        assert any(names[0] == "0.jpg" for names in listed), f"no CelebA-HQ file list in the manifests: {listed}"
    print(f"{notebook}: {run.seconds:.0f} s")


@pytest.mark.parametrize("notebook", [_param(nb, NOT_FAIL_FAST) for nb in NOTEBOOKS if nb not in NEEDS_NO_FILES])
def test_missing_file_stops_in_the_configuration_cell(notebook, mainjob_runs):
    run = mainjob_runs.get("missing", notebook)
    var = "HRINV_STYLE_INR_PKL" if notebook.startswith("14") else "HRINV_FFHQ_PKL"
    assert run.returncode == 1, run.output[-2000:]
    assert run.summary["failed"] == [f"{notebook}.ipynb"]
    executed = run.executed
    errors = cell_errors(executed)
    assert len(errors) == 1, errors
    index, ename, message = errors[0]
    source = "".join(executed["cells"][index]["source"])
    assert "build_config(" in source, f"stopped in cell {index}, not in the configuration cell:\n{source[:300]}"
    assert ename == "MissingAssetsError", (ename, message)
    assert var in message and "nothing has been computed" in message, message
    missing_file = "style-inr-gan-ffhq.pkl" if notebook.startswith("14") else "ffhq-res1024-mirror-stylegan2-noaug.pkl"
    assert f"gone/{missing_file}" in message, message  # the path it looked at
    later = [c for c in executed["cells"][index + 1 :] if c["cell_type"] == "code"]
    assert all(not c.get("execution_count") for c in later), "no cell after the configuration cell ran"
    assert not (run.figures_dir / f"{notebook}.json").exists()


@pytest.mark.parametrize("notebook", [_param(nb, {}) for nb in ("02_perceptual_loss_table", "11_lso_scatter")])
def test_missing_optional_weights_are_reported_unavailable(notebook, mainjob_runs):
    """Without the LPIPS weights ($HRINV_LPIPS_VGG16_PT, $HRINV_TORCHVISION_VGG16 unset) the paper preset runs
    to its figure and says that the metric is unavailable and why."""
    run = mainjob_runs.get("optional", notebook)
    assert_completed(run)
    printed = text_outputs(run.executed)
    assert "unavailable" in printed and "HRINV_TORCHVISION_VGG16" in printed, printed[-2000:]
