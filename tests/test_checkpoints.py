"""Checkpoint loading and saving: NVIDIA-structured pickles (built here), safety, formats, errors."""

from __future__ import annotations

import collections
import os
import pickle
import sys
import types
from pathlib import Path

import pytest
import torch
from conftest import EDGE, TINY

import hrinv_nb
from hrinv_nb.checkpoints import load_networks, save_networks
from hrinv_nb.errors import CheckpointError, UnsafePickleError

# ----------------------------------------------------------------------------- NVIDIA-like pickles


def _install_fake_nvidia_modules(monkeypatch: pytest.MonkeyPatch) -> type:
    """Register stand-ins for torch_utils.persistence and dnnlib.util so pickle can name them."""
    persistence = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # never called by hrinv_nb's loader
        raise AssertionError("the real reconstruct function must not run")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    torch_utils = types.ModuleType("torch_utils")
    torch_utils.persistence = persistence
    util = types.ModuleType("dnnlib.util")

    class EasyDict(dict):
        pass

    EasyDict.__module__ = "dnnlib.util"
    EasyDict.__qualname__ = "EasyDict"
    util.EasyDict = EasyDict
    dnnlib = types.ModuleType("dnnlib")
    dnnlib.util = util
    for name, mod in {
        "torch_utils": torch_utils,
        "torch_utils.persistence": persistence,
        "dnnlib": dnnlib,
        "dnnlib.util": util,
    }.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return EasyDict


class _Persistent:
    """Pickles exactly like an object of NVIDIA's persistence-decorated classes (version 6)."""

    def __init__(self, class_name: str, state: dict, module_src: str) -> None:
        self.meta = dict(type="class", version=6, module_src=module_src, class_name=class_name, state=state)

    def __reduce__(self):
        return (sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj, (self.meta,))


def _as_persistent(module: torch.nn.Module, init_kwargs: dict | None, easydict: type, src: str) -> _Persistent:
    state = {
        "training": False,
        "_parameters": collections.OrderedDict(module._parameters),
        "_buffers": collections.OrderedDict(module._buffers),
        "_non_persistent_buffers_set": set(),
        "_modules": collections.OrderedDict(
            (n, _as_persistent(c, {}, easydict, src)) for n, c in module._modules.items()
        ),
        "_init_args": (),
        "_init_kwargs": easydict(init_kwargs or {}),
        "_orig_module_src": src,
        "_orig_class_name": type(module).__name__,
    }
    return _Persistent(type(module).__name__, state, src)


def _nvidia_pickle(path: Path, nets: hrinv_nb.Networks, easydict: type, src: str) -> Path:
    def kw(d):
        return easydict({k: (easydict(v) if isinstance(v, dict) else v) for k, v in d.items()})

    g_kwargs = {k: v for k, v in nets.meta["generator_init_kwargs"].items()}
    d_kwargs = {k: v for k, v in nets.meta["discriminator_init_kwargs"].items() if k != "cmap_dim"}
    snapshot = {
        "training_set_kwargs": easydict(path="ffhq.zip", resolution=nets.G.img_resolution),
        "G": _as_persistent(nets.G, kw(g_kwargs), easydict, src),
        "D": _as_persistent(nets.D, kw(d_kwargs), easydict, src),
        "G_ema": _as_persistent(nets.G, kw(g_kwargs), easydict, src),
        "augment_pipe": None,
    }
    with open(path, "wb") as f:
        pickle.dump(snapshot, f)
    return path


def test_nvidia_pickle_loads_to_identical_outputs(tmp_path, monkeypatch, tiny_tensors):
    marker = tmp_path / "module_src_was_executed"
    easydict = _install_fake_nvidia_modules(monkeypatch)
    reference = load_networks(TINY)
    src = f"open({str(marker)!r}, 'w').write('pwned')\n"
    pkl = _nvidia_pickle(tmp_path / "network-snapshot.pkl", reference, easydict, src)
    for name in ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util"):
        monkeypatch.delitem(sys.modules, name)  # the loader must not need NVIDIA's code

    nets = load_networks(pkl)
    assert nets.meta["format"] == "pickle" and nets.D is not None
    assert not marker.exists()
    with torch.no_grad():
        img = nets.G.synthesis(tiny_tensors["ws_psi1"], noise_mode="const")
        ref = reference.G.synthesis(tiny_tensors["ws_psi1"], noise_mode="const")
        logits = nets.D(tiny_tensors["img_psi1_const"], None)
    assert torch.equal(img, ref)
    assert torch.equal(nets.G.mapping(tiny_tensors["z"], None), reference.G.mapping(tiny_tensors["z"], None))
    torch.testing.assert_close(logits, tiny_tensors["D_logits"], atol=2e-5, rtol=5e-6)
    assert nets.meta["training_set_kwargs"]["resolution"] == 64


class _Malicious:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("nested", [False, True])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, nested):
    marker = tmp_path / "marker"
    payload = _Malicious(marker)
    obj = {"G_ema": {"state": [payload]}} if nested else payload
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(obj))
    with pytest.raises(UnsafePickleError) as info:
        load_networks(path)
    assert "system" in str(info.value) and info.value.global_name.endswith("system")
    assert not marker.exists()


def test_malicious_global_inside_torch_pt_is_refused(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    torch.save({"G.x": _Malicious(marker)}, path)
    with pytest.raises(CheckpointError):
        load_networks(path)
    assert not marker.exists()


# ----------------------------------------------------------------------------- project format


def test_safetensors_round_trip(tmp_path, tiny_tensors):
    nets = load_networks(TINY)
    out = save_networks(tmp_path / "net.safetensors", G=nets.G, D=nets.D, meta={"seed": 7, "note": "x"})
    again = load_networks(out)
    assert again.meta["seed"] == "7" and again.meta["note"] == "x" and again.G.num_ws == 10
    with torch.no_grad():
        assert torch.equal(
            again.G.synthesis(tiny_tensors["wplus"], noise_mode="const"),
            nets.G.synthesis(tiny_tensors["wplus"], noise_mode="const"),
        )
    assert not list(tmp_path.glob("*.tmp")), "atomic write must not leave temporaries"


def test_half_storage_loads_as_float32(tmp_path, tiny_tensors):
    nets = load_networks(EDGE)
    out = save_networks(tmp_path / "half.safetensors", G=nets.G, half=True)
    assert out.stat().st_size < 0.6 * save_networks(tmp_path / "full.safetensors", G=nets.G).stat().st_size
    again = load_networks(out)
    assert again.D is None
    assert all(p.dtype == torch.float32 for p in again.G.parameters())


def test_pt_state_dict_with_inferred_kwargs(tmp_path, tiny_tensors):
    nets = load_networks(TINY)
    path = tmp_path / "G.pt"
    torch.save(nets.G.state_dict(), path)
    with pytest.warns(UserWarning, match="inferred"):
        again = load_networks(path)
    assert again.meta["format"] == "torch"
    assert again.G.init_kwargs["synthesis_kwargs"]["channel_base"] == 4096
    with torch.no_grad():
        torch.testing.assert_close(
            again.G.synthesis(tiny_tensors["ws_psi1"], noise_mode="const"),
            tiny_tensors["img_psi1_const"],
            atol=1e-4,
            rtol=0,
        )


def test_pt_with_prefixed_keys_and_kwargs(tmp_path):
    import json

    nets = load_networks(EDGE)
    blob = {f"G.{k}": v for k, v in nets.G.state_dict().items()}
    blob["generator_init_kwargs"] = json.dumps(nets.G.init_kwargs)
    torch.save(blob, tmp_path / "g.pt")
    assert load_networks(tmp_path / "g.pt").G.num_ws == 8


# ----------------------------------------------------------------------------- errors


def test_missing_file_names_path_and_where_to_put_it(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_networks(tmp_path / "ffhq.pkl")
    assert "ffhq.pkl" in str(info.value) and "ffhq-res1024-mirror-stylegan2-noaug.pkl" in str(info.value)


@pytest.mark.parametrize("content", [b"", b"GIF89a not a network at all"])
def test_unknown_format(tmp_path, content):
    path = tmp_path / "weird.bin"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        load_networks(path)


def test_missing_unexpected_and_mismatched_keys_are_listed(tmp_path):
    nets = load_networks(TINY)
    sd = nets.G.state_dict()
    broken = {f"G.{k}": v for k, v in sd.items() if k != "mapping.fc3.bias"}
    broken["G.synthesis.b8.extra"] = torch.zeros(1)
    broken["G.synthesis.b4.const"] = torch.zeros(1, 4, 4)
    import json

    from safetensors.torch import save_file

    save_file(broken, tmp_path / "bad.safetensors", metadata={"generator_init_kwargs": json.dumps(nets.G.init_kwargs)})
    with pytest.raises(CheckpointError) as info:
        load_networks(tmp_path / "bad.safetensors")
    msg = str(info.value)
    assert "mapping.fc3.bias" in msg and "synthesis.b8.extra" in msg and "synthesis.b4.const" in msg
    assert "missing" in msg and "unexpected" in msg and "shape" in msg


def test_load_to_device_and_eval_mode():
    nets = load_networks(EDGE, device="cpu")
    assert not nets.G.training and not nets.D.training
    assert not any(p.requires_grad for p in nets.G.parameters())
