"""GAN inversion by optimisation (Eq. 1), the HRInversion projector.

:func:`project` (one image) and :func:`project_batch` (B images as B independent problems, in chunks)
share one optimisation loop. It optimises a W or W+ code (and optionally the constant noise maps of a deep copy of
the generator) with Adam under the authors' schedule: the learning rate ramps up over the first 5 %
of the steps from exactly 0, stays flat, and follows a cosine to ≈0 over the last 25 %
(:func:`learning_rate`); latent noise ε of scale 0.05·w_std decays quadratically to 0 at 75 %
(:func:`latent_noise_sigma`). The loss is d(G(w+ε, n), x) + λ_mse·MSE + λ_noise·R(n).

Noise maps are renormalised only when they are optimised (the authors' code also renormalised the
generator's fixed constant maps, which changes G's output when only w is optimised: avoided here).

Inputs are checked before any work (:mod:`hrinv_nb.optim_checks`): positive integer step counts,
finite non-negative loss weights, a finite positive learning rate, a floating-point target in
[-1, 1]; the optimisation stops with :class:`~hrinv_nb.optim_checks.NonFiniteLossError` at the
first non-finite loss.

Randomness: w̄ and w_std come from ``numpy.random.RandomState(w_avg_seed)`` latents, like the
authors' code; the fresh noise maps and ε come from ``torch.Generator(device).manual_seed(seed)``.
Same seed, same device and thread count -> the same result.

Results save to ``.npz`` with the authors' key ``w`` ([1, num_ws, w_dim]) and the noise maps under
``noise_bufs/<buffer name>`` (flat arrays, no pickle; the authors pickled a dict under
``noise_bufs``, which :func:`load_projection` reads with a restricted reader that never unpickles).
"""

from __future__ import annotations

import copy
import inspect
import io
import math
import os
import pickle
import sys
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .errors import FileFormatError
from .files import atomic_write
from .losses import PerceptualLoss, perceptual_loss
from .memory import default_batch_size
from .optim_checks import (
    check_finite_loss,
    check_finite_result,
    check_images,
    check_positive,
    check_steps,
    check_weight,
)

NOISE_PREFIX = "noise_bufs/"


@dataclass
class ProjectionResult:
    """``w`` [1, num_ws, w_dim] without ε; ``noise`` the optimised maps by buffer name (empty when
    they were not optimised: the generator's own constant maps apply); ``image`` [1, 3, H, W] =
    G(w, noise); ``history`` per-step lists: lr, sigma, loss, perceptual, mse, noise_reg."""

    w: torch.Tensor
    noise: dict[str, torch.Tensor]
    image: torch.Tensor
    history: dict[str, list[float]] = field(default_factory=dict)

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``w`` and ``noise`` to ``path`` (.npz, atomically)."""
        return save_projection(path, self.w, self.noise)


# ----------------------------------------------------------------------------------------------
# Schedules (pure functions of t = step / num_steps)


def learning_rate(t: float, base_lr: float = 0.1, rampup: float = 0.05, rampdown: float = 0.25) -> float:
    """Learning rate at ``t`` ∈ [0, 1): linear ramp-up (0 at t=0), flat, cosine ramp-down over the tail."""
    ramp = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp = ramp * (min(1.0, t / rampup) if rampup > 0 else 1.0)
    return base_lr * ramp


def latent_noise_sigma(t: float, w_std: float, factor: float = 0.05, ramp: float = 0.75) -> float:
    """σ_ε(t) = w_std · factor · max(0, 1 − t/ramp)²."""
    return w_std * factor * max(0.0, 1.0 - t / ramp) ** 2


# ----------------------------------------------------------------------------------------------
# Latent statistics and noise maps


def w_statistics(
    G: nn.Module,
    num_samples: int = 10000,
    seed: int = 303,
    c: torch.Tensor | None = None,
    batch_size: int = 2000,
) -> tuple[torch.Tensor, float]:
    """w̄ [1, 1, w_dim] and the total std sqrt(Σ‖w − w̄‖² / N) from N mapped ``RandomState(seed)`` latents."""
    device = next(G.parameters()).device
    z_all = np.random.RandomState(seed).randn(num_samples, G.z_dim)
    samples = []
    with torch.no_grad():
        for start in range(0, num_samples, batch_size):
            z = torch.from_numpy(z_all[start : start + batch_size]).to(device, torch.float32)
            cz = None if c is None else c.to(device).expand(z.shape[0], -1)
            ws = G.mapping(z, cz, truncation_psi=1)
            samples.append(ws[:, 0, :].to("cpu", torch.float64).numpy())
    w = np.concatenate(samples, axis=0)
    w_avg = w.mean(axis=0, keepdims=True)
    w_std = float(np.sqrt(np.sum((w - w_avg) ** 2) / num_samples))
    return torch.from_numpy(w_avg[None]).to(device, torch.float32), w_std


def generator_noise_buffers(G: nn.Module) -> dict[str, torch.Tensor]:
    """The constant noise maps of ``G.synthesis`` (buffers whose name contains ``noise_const``)."""
    return {name: buf for name, buf in G.synthesis.named_buffers() if "noise_const" in name}


def _autocorrelation_penalty(maps: Iterable[torch.Tensor], mean) -> torch.Tensor:
    """Σ over maps and scales (down to 8²) of mean(n·roll_x n)² + mean(n·roll_y n)², ``mean`` the reduction."""
    total = None
    for n in maps:
        while True:
            term = mean(n * torch.roll(n, 1, dims=3)) ** 2 + mean(n * torch.roll(n, 1, dims=2)) ** 2
            total = term if total is None else total + term
            if n.shape[2] <= 8:
                break
            n = F.avg_pool2d(n, kernel_size=2)
    if total is None:
        raise ValueError("no noise maps")
    return total


def _as_4d(buf: torch.Tensor) -> torch.Tensor:
    n = buf[None, None] if buf.ndim == 2 else buf
    assert n.ndim == 4, f"noise map must be [H,W] or [B,C,H,W], got {tuple(buf.shape)}"
    return n


def noise_regularization(noise: Iterable[torch.Tensor]) -> torch.Tensor:
    """NVIDIA's multi-scale autocorrelation penalty Σ (mean(n·roll_x n)² + mean(n·roll_y n)²) down to 8²."""
    return _autocorrelation_penalty((_as_4d(b) for b in noise), lambda t: t.mean())


def noise_regularization_per_sample(noise: Iterable[torch.Tensor]) -> torch.Tensor:
    """The same penalty for each sample of ``[B, 1, H, W]`` maps -> ``[B]`` (batched projection)."""

    def maps():
        for buf in noise:
            assert buf.ndim == 4 and buf.shape[1] == 1, f"expected noise maps [B,1,H,W], got {tuple(buf.shape)}"
            yield buf

    return _autocorrelation_penalty(maps(), lambda t: t.mean(dim=(1, 2, 3)))


def normalize_noise_(noise: Iterable[torch.Tensor]) -> None:
    """Re-centre and rescale each map in place to zero mean and unit RMS (no grad)."""
    with torch.no_grad():
        for buf in noise:
            buf -= buf.mean()
            buf *= buf.square().mean().rsqrt()


def normalize_noise_per_sample_(noise: Iterable[torch.Tensor]) -> None:
    """Re-centre and rescale each sample's ``[B, 1, H, W]`` map in place to zero mean and unit RMS (no grad)."""
    with torch.no_grad():
        for buf in noise:
            buf -= buf.mean(dim=(1, 2, 3), keepdim=True)
            buf *= buf.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()


# ----------------------------------------------------------------------------------------------
# .npz files


class ProjectionFileError(FileFormatError):
    """A projection ``.npz`` that cannot be read: not a zip, corrupt, too large, or not the expected arrays."""


class ProjectionNotFoundError(ProjectionFileError, FileNotFoundError):
    """The projection file does not exist (also a :class:`FileNotFoundError`)."""


# Largest decoded size accepted, per array and for the whole archive. A real projection is far
# smaller (w of a 1024² network: 36 KB; all its noise maps: about 11 MB), while a 1 MB archive can
# declare gigabytes.
MAX_PROJECTION_BYTES = 1 << 30
_MAX_MEMBERS = 4096
_FLOAT_CODES = {"f2", "f4", "f8"}


def _check_shape(shape: object) -> tuple[int, ...]:
    """A declared array shape: a tuple of non-negative ints."""
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ValueError(f"invalid array shape {shape!r}")
    return shape


class _PickledDtype:
    """Stands in for ``numpy.dtype`` in the legacy pickle: records a float or object type code only."""

    def __init__(self, code: object, align: object = False, copy: object = True) -> None:
        if code not in _FLOAT_CODES | {"O8", "O4"}:
            raise ValueError(f"pickled dtype {code!r} is not a float or object dtype")
        self.code = str(code)
        self.order = "|"

    def __setstate__(self, state: object) -> None:
        order = state[1] if isinstance(state, tuple) and len(state) > 1 else None
        if order not in ("<", ">", "|", "="):
            raise ValueError(f"invalid pickled dtype state {state!r}")
        self.order = order


class _PickledArray:
    """Stands in for a pickled ``numpy.ndarray``: rebuilds float arrays from raw bytes, object
    arrays from their item list, without calling NumPy's own unpickling code on the file's data."""

    def __init__(self, *args: object) -> None:
        self.value: object = None

    def __setstate__(self, state: object) -> None:
        if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[2], _PickledDtype)):
            raise ValueError("invalid pickled array state")
        _, shape, dtype, fortran, data = state
        shape = _check_shape(shape)
        count = math.prod(shape)
        if dtype.code.startswith("O"):
            if not isinstance(data, list) or len(data) != count:
                raise ValueError("pickled object array: item list does not match its shape")
            items = [item.value if isinstance(item, _PickledArray) else item for item in data]
            self.value = items[0] if shape == () else items
            return
        order = "=" if dtype.order == "|" else dtype.order
        if not isinstance(data, bytes) or len(data) != count * np.dtype(dtype.code).itemsize:
            raise ValueError("pickled float array: data size does not match its shape")
        array = np.frombuffer(data, dtype=np.dtype(order + dtype.code), count=count)
        self.value = array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


def _pickled_reconstruct(cls: object, shape: object, typecode: object) -> _PickledArray:
    """Stands in for ``numpy's _reconstruct``: an empty array filled by the following BUILD."""
    return _PickledArray()


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Reads the authors' pickled ``noise_bufs`` dict of float arrays and nothing else.

    Every global a pickle asks for is answered by a stand-in defined here, so no code from the
    file's pickle ever runs (a plain ``pickle.load`` would call any function the file names).
    """

    _STAND_INS = {
        ("numpy.core.multiarray", "_reconstruct"): _pickled_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _pickled_reconstruct,
        ("numpy", "ndarray"): _PickledArray,
        ("numpy", "dtype"): _PickledDtype,
    }

    def find_class(self, module: str, name: str) -> object:
        try:
            return self._STAND_INS[(module, name)]
        except KeyError:
            raise ValueError(
                f"the pickle refers to {module}.{name}, which is not a NumPy float array; refused"
            ) from None

    def persistent_load(self, pid: object) -> object:
        raise ValueError("the pickle uses persistent ids (for example torch tensors); refused")


def _legacy_noise(data: bytes) -> dict[str, np.ndarray]:
    """The authors' pickled ``noise_bufs``: a dict of buffer name -> float array."""
    value = _ArrayOnlyUnpickler(io.BytesIO(data)).load()
    noise = value.value if isinstance(value, _PickledArray) else None
    if isinstance(noise, dict):
        noise = {k: v.value if isinstance(v, _PickledArray) else v for k, v in noise.items()}
    if not isinstance(noise, dict) or not all(
        isinstance(k, str) and isinstance(v, np.ndarray) for k, v in noise.items()
    ):
        raise ValueError("the pickled 'noise_bufs' is not a dict of buffer name -> float array")
    return noise


def _read_npy(member: IO[bytes], key: str, max_bytes: int) -> np.ndarray | dict[str, np.ndarray]:
    """Read one ``.npy`` member, checking its declared size against ``max_bytes`` before reading."""
    try:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except ValueError as err:
        # NumPy's message for an oversized header suggests an unsafe option; state the reason only.
        reason = "the header is too large to parse safely" if "allow_pickle" in str(err) else str(err)
        raise ValueError(f"array {key!r}: invalid .npy header ({reason})") from err
    shape = _check_shape(shape)
    if dtype.hasobject:
        if key != "noise_bufs":
            raise ValueError(f"array {key!r} holds Python objects (a pickle), which are never loaded")
        return _legacy_noise(member.read(max_bytes + 1))
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > max_bytes:
        raise ValueError(
            f"array {key!r} declares shape {shape} of {dtype} = {nbytes} bytes, above the limit of {max_bytes} (max_bytes)"
        )
    data = member.read(nbytes)
    if len(data) != nbytes:
        raise ValueError(f"array {key!r} is truncated ({len(data)} of {nbytes} bytes)")
    array = np.frombuffer(data, dtype=dtype, count=math.prod(shape))
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


def _float_tensor(array: object, key: str, ndims: tuple[int, ...]) -> torch.Tensor:
    """``array`` as a float32 tensor; refuse non-float dtypes, other ranks and non-finite values."""
    if not isinstance(array, np.ndarray) or array.dtype.kind != "f" or array.dtype.names is not None:
        raise ValueError(f"array {key!r} has dtype {getattr(array, 'dtype', type(array).__name__)}, not a float dtype")
    if array.ndim not in ndims or array.size == 0:
        raise ValueError(
            f"array {key!r} has shape {array.shape}; expected a non-empty array with {' or '.join(map(str, ndims))} dimensions"
        )
    if not np.isfinite(array).all():
        raise ValueError(f"array {key!r} contains NaN or infinite values")
    return torch.from_numpy(np.array(array, dtype=np.float32))


def _read_projection(archive: zipfile.ZipFile, max_bytes: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(w, noise)`` from an open archive; every size is checked in the zip directory first."""
    infos = archive.infolist()
    if len(infos) > _MAX_MEMBERS:
        raise ValueError(f"the archive has {len(infos)} members, more than {_MAX_MEMBERS}")
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        raise ValueError("the archive has duplicate member names")
    for info in infos:
        if info.file_size > max_bytes:
            raise ValueError(
                f"member {info.filename!r} is {info.file_size} bytes uncompressed, above the limit of {max_bytes} (max_bytes)"
            )
    total = sum(info.file_size for info in infos)
    if total > max_bytes:
        raise ValueError(f"the members total {total} bytes uncompressed, above the limit of {max_bytes} (max_bytes)")
    arrays: dict[str, object] = {}
    for info in infos:
        key = info.filename[:-4] if info.filename.endswith(".npy") else None
        if key is None or not (key in ("w", "noise_bufs") or key.startswith(NOISE_PREFIX)):
            continue  # other members are never read
        with archive.open(info) as member:
            arrays[key] = _read_npy(member, key, max_bytes)
    if "w" not in arrays:
        raise ValueError(f"no 'w' array; members {names}")
    w = _float_tensor(arrays["w"], "w", (2, 3))
    if w.ndim == 2:
        w = w[None]
    if w.shape[0] != 1:
        raise ValueError(f"array 'w' has shape {tuple(w.shape)}; expected [1, num_ws, w_dim] or [num_ws, w_dim]")
    noise = {
        k[len(NOISE_PREFIX) :]: _float_tensor(v, k, (2, 3, 4)) for k, v in arrays.items() if k.startswith(NOISE_PREFIX)
    }
    if "noise_bufs" in arrays:
        if noise:
            raise ValueError("both 'noise_bufs' and 'noise_bufs/<name>' arrays are present")
        noise = {k: _float_tensor(v, f"noise_bufs[{k!r}]", (2, 3, 4)) for k, v in arrays["noise_bufs"].items()}
    return w, noise


def projection_writer(w: torch.Tensor, noise: dict[str, torch.Tensor] | None = None) -> Callable[[str], None]:
    """A writer (for :func:`hrinv_nb.files.atomic_write`) of ``w`` [1, num_ws, w_dim] and noise maps as ``.npz``."""
    if not (isinstance(w, torch.Tensor) and w.ndim == 3 and w.shape[0] == 1):
        raise ProjectionFileError(f"w must be [1, num_ws, w_dim], got {tuple(getattr(w, 'shape', ()))}")
    arrays = {"w": w.detach().to("cpu", torch.float32).numpy()}
    for name, buf in (noise or {}).items():
        arrays[NOISE_PREFIX + name] = buf.detach().to("cpu", torch.float32).numpy()

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:  # a file object: np.savez would append ".npz" to a name
            np.savez(handle, **arrays)

    return write


def save_projection(path: str | os.PathLike, w: torch.Tensor, noise: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``w`` [1, num_ws, w_dim] and the noise maps to ``path`` atomically (tmp file + os.replace).

    Refuses (:class:`ProjectionFileError`) a ``w`` of another shape and an existing read-only
    file (a file without write bits counts as read-only even for root).
    """
    path = Path(path)
    if not (isinstance(w, torch.Tensor) and w.ndim == 3 and w.shape[0] == 1):
        raise ProjectionFileError(f"{path}: w must be [1, num_ws, w_dim], got {tuple(getattr(w, 'shape', ()))}")
    if path.exists() and (not os.access(path, os.W_OK) or path.stat().st_mode & 0o222 == 0):
        raise ProjectionFileError(f"{path}: the file exists and is read-only; refusing to overwrite it")
    return atomic_write(path, projection_writer(w, noise))


def load_projection(
    path: str | os.PathLike, *, max_bytes: int = MAX_PROJECTION_BYTES
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Read ``(w, noise)`` from a projection ``.npz`` without unpickling anything.

    ``w`` comes back as [1, num_ws, w_dim] float32 (a stored [num_ws, w_dim] gains the batch axis).
    The authors' format (a pickled dict under ``noise_bufs``) is read by a restricted reader that
    rebuilds only float arrays and refuses anything else the pickle names. Each array's declared
    size (from the zip directory and the .npy header) is checked against ``max_bytes`` before it
    is read. Every refusal is a :class:`ProjectionFileError` naming the file and the reason.
    """
    path = Path(path)
    if not path.exists():
        raise ProjectionNotFoundError(f"projection file not found: {path}")
    if path.is_dir():
        raise ProjectionFileError(f"{path}: is a directory, not a projection file")
    try:
        with zipfile.ZipFile(path) as archive:
            return _read_projection(archive, max_bytes)
    except zipfile.BadZipFile as err:
        raise ProjectionFileError(f"{path}: not a readable .npz (zip) archive ({err})") from err
    except MemoryError as err:
        raise ProjectionFileError(f"{path}: not enough memory to read the projection") from err
    except Exception as err:
        raise ProjectionFileError(
            f"{path}: {err if isinstance(err, ValueError) else f'corrupt archive ({type(err).__name__}: {err})'}"
        ) from err


# ----------------------------------------------------------------------------------------------
# The projector


def _check_target(target: torch.Tensor) -> None:
    """``target`` must be a floating [1, 3, H, W] tensor in [-1, 1]."""
    assert isinstance(target, torch.Tensor) and target.ndim == 4 and target.shape[:2] == (1, 3), (
        f"target must be [1,3,H,W] in [-1,1], got {tuple(target.shape) if isinstance(target, torch.Tensor) else target}"
    )
    check_images("target", target)


def _check_schedule(
    num_steps: object,
    lr: object,
    lr_rampup: object,
    lr_rampdown: object,
    latent_noise_factor: object,
    latent_noise_ramp: object,
    **weights: object,
) -> None:
    """Refuse bad optimisation arguments (shared by :func:`project` and ``project_batch``), naming the argument."""
    check_steps("num_steps", num_steps)
    check_positive("lr", lr)
    for name, value in (
        ("lr_rampup", lr_rampup),
        ("lr_rampdown", lr_rampdown),
        ("latent_noise_factor", latent_noise_factor),
        *weights.items(),
    ):
        check_weight(name, value)
    check_positive("latent_noise_ramp", latent_noise_ramp)  # σ_ε divides t by it


def _initial_w(
    w_init: torch.Tensor | None, w_avg: torch.Tensor, rows: int, w_dim: int, device: torch.device
) -> torch.Tensor:
    """w̄ repeated to ``rows`` rows, or a copy of ``w_init`` ([1, rows, w_dim] or [1, 1, w_dim])."""
    if w_init is None:
        return w_avg.repeat(1, rows, 1).clone()
    w_init = w_init.detach().to(device, torch.float32)
    assert w_init.ndim == 3 and w_init.shape[0] == 1 and w_init.shape[2] == w_dim and w_init.shape[1] in (1, rows), (
        f"w_init must be [1,{rows},{w_dim}] (or [1,1,{w_dim}]), got {tuple(w_init.shape)}"
    )
    return w_init.expand(1, rows, w_dim).clone()


# fmt: off
def project(G: nn.Module, target: torch.Tensor, *, loss: PerceptualLoss | str, num_steps: int = 1000,
            w_space: str = "w+", optimize_noise: bool = True, mse_weight: float = 50.0, noise_reg_weight: float = 0.0,
            lr: float = 0.1, seed: int = 0, progress: bool = True,
            callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None, w_avg_samples: int = 10000,
            w_avg_seed: int = 303, lr_rampup: float = 0.05, lr_rampdown: float = 0.25,
            latent_noise_factor: float = 0.05, latent_noise_ramp: float = 0.75,
            betas: tuple[float, float] = (0.9, 0.999), normalize_noise: bool = True, optimize_w: bool = True,
            w_init: torch.Tensor | None = None, c: torch.Tensor | None = None) -> ProjectionResult:
# fmt: on
    """Invert ``target`` ([1, 3, H, W] in [-1, 1]) into ``G`` (never mutated; a deep copy is optimised).

    ``loss``: a module from :func:`perceptual_loss` (its target is set here) or a loss name.
    ``w_space``: ``'w+'`` (one code per layer, HRInversion) or ``'w'`` (one shared code).
    ``optimize_noise``: fresh N(0, 1) noise maps, optimised and renormalised after every step.
    ``optimize_w=False`` with ``w_init`` optimises only the noise maps (ε off): the noise-map style transfer.
    ``callback(step, w, image)`` receives detached snapshots (w without ε, image with ε).
    ε is drawn for every row of the optimised code (W+: one draw per layer; W: one shared draw).
    Raises :class:`~hrinv_nb.errors.HrinvError` for a bad argument or target, and
    :class:`~hrinv_nb.optim_checks.NonFiniteLossError` at the first non-finite loss.
    """
    options = dict(locals())  # exactly the arguments: the one source of the options and their defaults
    del options["G"], options["target"]
    _check_target(target)
    return _project(G, target, chunk_size=None, **options).sample(0)


# Keyword arguments of project(); project_batch takes the same, plus chunk_size.
PROJECT_OPTIONS = {
    name: p.default
    for name, p in inspect.signature(project).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
}


@dataclass
class BatchProjectionResult:
    """``w`` [B, num_ws, w_dim] (without ε); ``noise`` maps [B, H, W] by buffer name (empty when not
    optimised); ``images`` [B, 3, H, W] = G(w, noise); ``history`` per-step lr and sigma, and the means over
    all B samples (every chunk) of the per-sample loss, perceptual, mse and noise_reg."""

    w: torch.Tensor
    noise: dict[str, torch.Tensor]
    images: torch.Tensor
    history: dict[str, list[float]] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.w.shape[0])

    def sample(self, index: int) -> ProjectionResult:
        """Sample ``index`` as a single :class:`ProjectionResult` (history is the batch's)."""
        return ProjectionResult(
            w=self.w[index : index + 1].clone(),
            noise={name: buf[index].clone() for name, buf in self.noise.items()},
            image=self.images[index : index + 1].clone(),
            history=self.history,
        )


# ----------------------------------------------------------------------------------------------
# The one optimisation loop behind project() and project_batch()


def _noise_layers(G: nn.Module) -> dict[str, nn.Module]:
    """Synthesis layers that own a ``noise_const`` buffer, keyed by the buffer's name in ``G.synthesis``."""
    return {
        f"{name}.noise_const": module
        for name, module in G.synthesis.named_modules()
        if "noise_const" in getattr(module, "_buffers", {})
    }


def project_batch(
    G: nn.Module,
    targets: torch.Tensor,
    *,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    **options: Any,
) -> BatchProjectionResult:
    """Invert every image of ``targets`` ([B, 3, H, W] in [-1, 1]) into ``G``, as B independent problems.

    Takes the keyword arguments of :func:`project` (same defaults, same schedule and objective), plus
    ``batch_size``: at most this many targets per batch (``None`` or 0: the largest batch that fits the
    device's free memory, :func:`hrinv_nb.memory.default_batch_size`; ``chunk_size`` is its older name).
    Each sample has its own code, noise maps and ε; the optimised objective is the *sum* of the
    per-sample losses, so every sample's gradient is its own and Adam (element-wise) treats the samples
    independently: the batch is B separate projections that share only the forward passes. Chunks are
    solved one after another, each from w̄ with a fresh Adam state and the full schedule; peak memory
    depends on the batch size, not on B. ``w_init`` may be [1 or B, rows, w_dim]; ``callback`` receives
    each chunk's tensors. :func:`project_stream` writes every result to a folder instead (resumable).

    Random streams: w̄ and w_std come once from ``numpy.random.RandomState(w_avg_seed)``; everything
    else from ONE ``torch.Generator(device).manual_seed(seed)`` that continues through the chunks in
    order: for each chunk, first its noise maps (when ``optimize_noise``: one ``[b, 1, H, W]`` draw per
    layer, in the synthesis network's order), then one ε draw ``[b, rows, w_dim]`` per step (when w is
    optimised, drawn even on steps where σ = 0). The same call gives the same result; any batch size
    ``>= B`` gives exactly the one-batch result; with B = 1 the draws, and so the result, are :func:`project`'s.
    """
    _check_batch_options(options)
    assert isinstance(targets, torch.Tensor) and targets.ndim == 4 and targets.shape[1] == 3, (
        f"targets must be [B,3,H,W] in [-1,1], got {tuple(targets.shape) if isinstance(targets, torch.Tensor) else targets}"
    )
    o = {**PROJECT_OPTIONS, **options}
    size = _batch_size_of(batch_size, chunk_size, G, tuple(targets.shape[2:]))
    return _project(G, targets, chunk_size=size, **o)


def _check_batch_options(options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - set(PROJECT_OPTIONS))
    if unknown:
        raise TypeError(
            f"got unexpected keyword argument(s) {unknown}; takes {sorted(PROJECT_OPTIONS)} and batch_size"
        )
    if "loss" not in options:
        raise TypeError("batched projection needs loss= (a perceptual_loss module or a loss name)")


def _batch_size_of(
    batch_size: int | None, chunk_size: int | None, G: nn.Module, size: tuple[int, ...]
) -> int | None:
    """The explicit batch size (``batch_size`` or its old name ``chunk_size``), or the memory default."""
    if chunk_size is not None:
        check_steps("chunk_size", chunk_size)  # errors name the argument the caller gave
    if batch_size:  # None or 0: the memory default
        check_steps("batch_size", batch_size)
    if batch_size and chunk_size and batch_size != chunk_size:
        raise ValueError(f"batch_size={batch_size} and chunk_size={chunk_size} disagree (chunk_size is its old name)")
    explicit = batch_size or chunk_size
    if explicit is not None:
        return int(explicit)
    return default_batch_size("projection", size, next(G.parameters()).device)


@dataclass
class _Setup:
    """What every chunk of one batched projection shares: a private copy of G, the loss, one random stream."""

    G: nn.Module
    loss: PerceptualLoss
    generator: torch.Generator
    w_avg: torch.Tensor
    w_std: float
    rows: int
    const_noise: dict[str, torch.Tensor]


def _setup(G: nn.Module, total_b: int, o: dict[str, Any]) -> _Setup:
    """Check the options (``targets`` are checked per chunk) and build the shared state."""
    _check_schedule(
        o["num_steps"],
        o["lr"],
        o["lr_rampup"],
        o["lr_rampdown"],
        o["latent_noise_factor"],
        o["latent_noise_ramp"],
        mse_weight=o["mse_weight"],
        noise_reg_weight=o["noise_reg_weight"],
    )
    w_space = str(o["w_space"]).lower()
    if w_space not in ("w+", "w"):
        raise ValueError(f"w_space must be 'w+' or 'w', got {o['w_space']!r}")
    if not (o["optimize_w"] or o["optimize_noise"]):
        raise ValueError("nothing to optimise: optimize_w and optimize_noise are both False")
    if o["noise_reg_weight"] > 0 and not o["optimize_noise"]:
        raise ValueError("noise_reg_weight > 0 needs optimize_noise=True")
    device = next(G.parameters()).device
    G = copy.deepcopy(G).eval().requires_grad_(False)
    if G.c_dim > 0 and o["c"] is None:
        raise ValueError(f"G is conditional (c_dim={G.c_dim}); pass c=[1,{G.c_dim}]")
    loss = perceptual_loss(o["loss"], device=device) if isinstance(o["loss"], str) else o["loss"]
    w_init = o["w_init"]
    if w_init is not None and w_init.shape[0] not in (1, total_b):
        raise ValueError(f"w_init has {w_init.shape[0]} codes for {total_b} targets (give 1 or {total_b})")
    generator = torch.Generator(device=device).manual_seed(o["seed"])  # one stream, continued chunk after chunk
    w_avg, w_std = w_statistics(G, o["w_avg_samples"], o["w_avg_seed"], o["c"])
    rows = G.num_ws if w_space == "w+" else 1
    const_noise = {name: module.noise_const for name, module in _noise_layers(G).items()}
    return _Setup(G, loss, generator, w_avg, w_std, rows, const_noise)


def _solve_chunk(
    s: _Setup, targets: torch.Tensor, start: int, total_b: int, k: int, n_chunks: int, o: dict[str, Any]
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, dict[str, list[float]]]:
    """Chunk ``k`` (its ``targets`` start at item ``start``) on the shared state: see :func:`_project_chunk`."""
    for name, module in _noise_layers(s.G).items():  # each chunk starts from G's own buffers
        module._buffers["noise_const"] = s.const_noise[name]
    device = next(s.G.parameters()).device
    tgt = targets.to(device, torch.float32)
    w_init = o["w_init"]
    init = None if w_init is None else (w_init if w_init.shape[0] == 1 else w_init[start : start + tgt.shape[0]])
    desc = (
        "project"
        if total_b == 1
        else f"project x{tgt.shape[0]}" + (f" ({k + 1}/{n_chunks})" if n_chunks > 1 else "")
    )
    return _project_chunk(s.G, tgt, s.loss, s.generator, s.w_avg, s.w_std, init, s.rows, desc, o)


def _add_history(sums: dict[str, list[float]], hist: dict[str, list[float]]) -> dict[str, list[float]]:
    """Per-step sums over chunks (lr and sigma kept from the first chunk)."""
    if not sums:
        return {k: list(v) for k, v in hist.items()}
    for key in ("loss", "perceptual", "mse", "noise_reg"):
        sums[key] = [a + b for a, b in zip(sums[key], hist[key])]
    return sums


def _mean_history(sums: dict[str, list[float]], total_b: int) -> dict[str, list[float]]:
    return {key: (values if key in ("lr", "sigma") else [v / total_b for v in values]) for key, values in sums.items()}


def _project(G: nn.Module, targets: torch.Tensor, *, chunk_size: int | None, **o: Any) -> BatchProjectionResult:
    """Check the options, then solve ``targets`` chunk by chunk with one random stream (see :func:`project_batch`)."""
    check_images("targets" if targets.shape[0] > 1 else "target", targets)
    total_b = targets.shape[0]
    chunk = total_b if chunk_size is None else check_steps("chunk_size", chunk_size)
    s = _setup(G, total_b, o)
    starts = range(0, total_b, chunk)
    ws, images, noise_parts = [], [], []
    sums: dict[str, list[float]] = {}
    for k, start in enumerate(starts):
        w_c, noise_c, images_c, hist_c = _solve_chunk(s, targets[start : start + chunk], start, total_b, k, len(starts), o)
        ws.append(w_c)
        images.append(images_c)
        noise_parts.append(noise_c)
        sums = _add_history(sums, hist_c)
    history = _mean_history(sums, total_b)
    w_final, images_all = torch.cat(ws), torch.cat(images)
    noise = {name: torch.cat([part[name] for part in noise_parts]) for name in noise_parts[0]}
    assert images_all.shape == (total_b, 3, *targets.shape[2:]) and w_final.shape == (total_b, s.G.num_ws, s.G.w_dim)
    return BatchProjectionResult(w=w_final, noise=noise, images=images_all, history=history)


# ----------------------------------------------------------------------------------------------
# Streamed, resumable batched projection


@dataclass
class StreamedProjection:
    """A :func:`project_stream` run read back from its folder: ``w`` [B, num_ws, w_dim] in memory (small),
    images and noise maps on disk (:meth:`image`, :meth:`iter_images`, :meth:`sample`); ``records``
    the per-item metrics (one dict per item); ``history`` as :class:`BatchProjectionResult`'s."""

    folder: Path
    w: torch.Tensor
    history: dict[str, list[float]]
    records: list[dict[str, Any]]
    batch_size: int
    computed: list[tuple[int, int]]

    def __len__(self) -> int:
        return int(self.w.shape[0])

    def image(self, index: int) -> torch.Tensor:
        """Item ``index``'s reconstruction [1, 3, H, W] (from its ``.npz``; a ``.png`` is 8-bit)."""
        name = self.records[index]["image"]
        path = self.folder / name
        if name.endswith(".png"):
            from .images import load_image

            return load_image(path, crop=False, min_short_side=1)
        from .stream import load_image_npz

        return load_image_npz(path)

    def iter_images(self, batch: int = 16) -> Iterator[torch.Tensor]:
        """The reconstructions in order, ``batch`` at a time ([b, 3, H, W] each)."""
        for start in range(0, len(self), batch):
            yield torch.cat([self.image(i) for i in range(start, min(start + batch, len(self)))])

    def sample(self, index: int) -> ProjectionResult:
        """Item ``index`` as a :class:`ProjectionResult` (w, noise maps and image read from the folder)."""
        w, noise = load_projection(self.folder / self.records[index]["projection"])
        return ProjectionResult(w=w, noise=noise, image=self.image(index), history=self.history)


def project_stream(
    G: nn.Module,
    targets: Any,
    out_dir: str | os.PathLike,
    *,
    batch_size: int | None = None,
    names: Sequence[str] | None = None,
    image_format: str = "npz",
    measure: Callable[[torch.Tensor, torch.Tensor], dict[str, list[float]]] | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
    **options: Any,
) -> StreamedProjection:
    """:func:`project_batch` that writes every result to ``out_dir`` as it is produced, and resumes.

    ``targets``: a [B, 3, H, W] tensor or anything sliced like one (``targets[a:b]`` -> a tensor, e.g.
    :class:`hrinv_nb.stream.ImageFiles`: only one chunk of images is then in memory). Per item: the code
    and noise maps (``items/<i>_projection.npz``, :func:`save_projection`'s format), the reconstruction
    (``items/<i>_image.npz``, float, or ``.png``) and a metrics line (``mse`` to the target, ``name``,
    and ``measure(images, targets)``'s per-sample values). Each chunk's files are written atomically
    after it finishes, with the random stream's state: a rerun with the same folder and parameters
    (:func:`hrinv_nb.stream.open_store`) skips the finished chunks and gives exactly the result of an
    uninterrupted run; other parameters stop it with :class:`hrinv_nb.stream.ResumeMismatchError`.
    ``batch_size=None``: the folder's batch size on a resume, else the memory default. ``on_chunk(start,
    stop)`` is called after each chunk computed (not for skipped ones).
    """
    from .stream import ChunkRecord, iter_chunks, open_store, restore_generator

    _check_batch_options(options)
    if image_format not in ("npz", "png"):
        raise ValueError(f"image_format must be 'npz' or 'png', got {image_format!r}")
    total_b = len(targets)
    first = targets[0:1]
    assert isinstance(first, torch.Tensor) and first.ndim == 4 and first.shape[1] == 3, (
        f"targets[0:1] must be [1,3,H,W] in [-1,1], got {getattr(first, 'shape', first)}"
    )
    names = [str(i) for i in range(total_b)] if names is None else [str(n) for n in names]
    assert len(names) == total_b, f"{len(names)} names for {total_b} targets"
    o = {**PROJECT_OPTIONS, **options}
    device = next(G.parameters()).device
    params = {k: v for k, v in o.items() if k not in ("progress", "callback")}
    params.update(
        G=G, targets=targets, names=names, image_format=image_format, measure=measure, device=str(device)
    )
    size = tuple(first.shape[2:])
    store = open_store(
        out_dir,
        "projection",
        params,
        total_b,
        None if not batch_size else check_steps("batch_size", batch_size),
        lambda: default_batch_size("projection", size, device),
    )
    s = _setup(G, total_b, o)
    chunks = list(iter_chunks(store))
    sums: dict[str, list[float]] = {}
    pending_rng: str | None = None
    computed = []
    for k, (start, stop, record) in enumerate(chunks):
        if record is None:
            if pending_rng is not None:
                restore_generator(s.generator, pending_rng)
                pending_rng = None
            tgt = targets[start:stop]
            assert isinstance(tgt, torch.Tensor) and tgt.shape == (stop - start, 3, *size), (
                f"targets[{start}:{stop}] must be [{stop - start},3,{size[0]},{size[1]}], got {getattr(tgt, 'shape', tgt)}"
            )
            check_images("targets", tgt)
            w_c, noise_c, images_c, hist_c = _solve_chunk(s, tgt, start, total_b, k, len(chunks), o)
            record = _write_projection_chunk(
                store, start, stop, tgt, w_c, noise_c, images_c, hist_c, names, image_format, measure, s
            )
            computed.append((start, stop))
            if on_chunk is not None:
                on_chunk(start, stop)
        else:
            pending_rng = record.extra["rng"]
        assert isinstance(record, ChunkRecord)
        sums = _add_history(sums, record.extra["history"])
    store.finish()
    records = store.records()
    w = torch.cat([load_projection(store.folder / r["projection"])[0] for r in records])
    assert w.shape == (total_b, s.G.num_ws, s.G.w_dim), tuple(w.shape)
    return StreamedProjection(store.folder, w, _mean_history(sums, total_b), records, store.batch_size, computed)


def _write_projection_chunk(
    store: Any,
    start: int,
    stop: int,
    targets: torch.Tensor,
    w: torch.Tensor,
    noise: dict[str, torch.Tensor],
    images: torch.Tensor,
    history: dict[str, list[float]],
    names: Sequence[str],
    image_format: str,
    measure: Callable[[torch.Tensor, torch.Tensor], dict[str, list[float]]] | None,
    s: _Setup,
) -> Any:
    """Write one chunk's codes, noise maps, images and metrics, then its record (with the random state)."""
    from .images import to_uint8
    from .stream import encode_generator, npz_writer

    b = stop - start
    assert w.shape[0] == b and images.shape[0] == b, (tuple(w.shape), tuple(images.shape), b)
    mse = (images - targets.to(images)).square().mean(dim=(1, 2, 3)).cpu().tolist()
    extra_metrics = measure(images, targets.to(images)) if measure is not None else {}
    files: list[tuple[Path, Any]] = []
    items = []
    for j in range(b):
        i = start + j
        proj = store.item_path(i, "projection.npz")
        img = store.item_path(i, f"image.{image_format}")
        files.append((proj, projection_writer(w[j : j + 1], {n: m[j] for n, m in noise.items()})))
        if image_format == "npz":
            files.append((img, npz_writer({"image": images[j : j + 1].to("cpu", torch.float32)})))
        else:
            from PIL import Image

            pil = Image.fromarray(to_uint8(images[j : j + 1]))
            files.append((img, lambda tmp, pil=pil: pil.save(tmp, format="PNG")))
        item = {
            "index": i,
            "name": names[i],
            "projection": str(proj.relative_to(store.folder)),
            "image": str(img.relative_to(store.folder)),
            "mse": float(mse[j]),
        }
        for key, values in extra_metrics.items():
            assert len(values) == b, f"measure()['{key}'] has {len(values)} values for {b} items"
            item[key] = float(values[j])
        items.append(item)
    return store.write_chunk(start, stop, files, items, {"rng": encode_generator(s.generator), "history": history})


def _project_chunk(
    G: nn.Module,
    targets: torch.Tensor,
    loss: PerceptualLoss,
    generator: torch.Generator,
    w_avg: torch.Tensor,
    w_std: float,
    w_init: torch.Tensor | None,
    rows: int,
    desc: str,
    o: dict[str, Any],
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, dict[str, list[float]]]:
    """One chunk ``targets`` [b, 3, H, W] on ``G`` (a private copy whose noise buffers may be replaced).

    Returns ``(w [b, num_ws, w_dim], noise {name: [b, H, W]}, images [b, 3, H, W], history)`` with
    ``history`` per-step *sums* over the chunk's samples (lr and sigma as they are).
    """
    device, batch = targets.device, targets.shape[0]
    optimize_w, optimize_noise, num_steps = o["optimize_w"], o["optimize_noise"], int(o["num_steps"])
    mse_weight, noise_reg_weight, lr = o["mse_weight"], o["noise_reg_weight"], o["lr"]
    loss.set_target(targets)
    w0 = _initial_w(None, w_avg, rows, G.w_dim, device) if w_init is None else w_init.detach().to(device, torch.float32)
    assert w0.ndim == 3 and w0.shape[2] == G.w_dim and w0.shape[1] in (1, rows), (
        f"w_init must be [1 or B, {rows}, {G.w_dim}] (or [.., 1, {G.w_dim}]), got {tuple(w0.shape)}"
    )
    w_opt = w0.expand(w0.shape[0], rows, G.w_dim).expand(batch, rows, G.w_dim).clone().requires_grad_(optimize_w)

    noise_bufs: dict[str, torch.Tensor] = {}
    if optimize_noise:
        # A canvas Style-INR synthesis (hrinv_nb.inr) runs its layers at the target's aspect: its maps have that shape.
        sizes = G.synthesis.noise_shapes(tuple(targets.shape[-2:])) if hasattr(G.synthesis, "noise_shapes") else {}
        for name, module in _noise_layers(G).items():
            shape = [batch, 1, *sizes.get(name, module.noise_const.shape[-2:])]
            buf = torch.randn(shape, generator=generator, device=device).requires_grad_(True)
            module._buffers["noise_const"] = buf  # broadcast over channels, one map per sample
            noise_bufs[name] = buf
    params = ([w_opt] if optimize_w else []) + list(noise_bufs.values())
    optimizer = torch.optim.Adam(params, lr=lr, betas=o["betas"])

    history: dict[str, list[float]] = {k: [] for k in ("lr", "sigma", "loss", "perceptual", "mse", "noise_reg")}
    bar = tqdm(range(num_steps), disable=not o["progress"], file=sys.stderr, desc=desc, leave=False)
    for step in bar:
        t = step / num_steps
        step_lr = learning_rate(t, lr, o["lr_rampup"], o["lr_rampdown"])
        for group in optimizer.param_groups:
            group["lr"] = step_lr
        sigma = latent_noise_sigma(t, w_std, o["latent_noise_factor"], o["latent_noise_ramp"]) if optimize_w else 0.0
        eps = torch.randn(w_opt.shape, generator=generator, device=device) * sigma if optimize_w else 0.0
        synth = G.synthesis((w_opt + eps).expand(batch, G.num_ws, G.w_dim), noise_mode="const")
        if synth.shape != targets.shape:
            raise ValueError(f"G produces {tuple(synth.shape)} images but the target is {tuple(targets.shape)}")
        perceptual = loss(synth) * batch  # the loss modules average over the batch: x b is the sum of b problems
        mse = (synth - targets).square().mean(dim=(1, 2, 3))  # [b]
        if noise_reg_weight > 0:
            noise_reg = noise_regularization_per_sample(noise_bufs.values())
        else:
            noise_reg = torch.zeros(batch, device=device)
        total = perceptual + (mse_weight * mse).sum() + (noise_reg_weight * noise_reg).sum()
        check_finite_loss(step, {"perceptual": perceptual, "mse": mse, "noise_reg": noise_reg}, total, synth)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        if noise_bufs and o["normalize_noise"]:
            normalize_noise_per_sample_(noise_bufs.values())

        for key, value in (
            ("lr", step_lr),
            ("sigma", sigma),
            ("loss", total),
            ("perceptual", perceptual),
            ("mse", mse.sum()),
            ("noise_reg", noise_reg.sum()),
        ):
            history[key].append(float(value.detach()) if isinstance(value, torch.Tensor) else float(value))
        if o["progress"] and step % 10 == 0:
            bar.set_postfix(loss=f"{history['loss'][-1] / batch:.4g}", mse=f"{history['mse'][-1] / batch:.4g}")
        if o["callback"] is not None:
            o["callback"](step, w_opt.detach().expand(batch, G.num_ws, G.w_dim).clone(), synth.detach())
        del synth, perceptual, mse, noise_reg, total
    bar.close()

    with torch.no_grad():
        w_final = w_opt.detach().expand(batch, G.num_ws, G.w_dim).clone()
        check_finite_result("the projected codes w", w_final)
        images = G.synthesis(w_final, noise_mode="const")
    noise = {name: buf.detach()[:, 0].clone() for name, buf in noise_bufs.items()}
    for name, maps in noise.items():
        check_finite_result(f"the noise maps {name}", maps)
    return w_final, noise, images, history
