"""Checkpoint loading on hostile and unlucky files: format sniffing, training states that would run
code, resource bombs, bad weights, errors that name the file, and the saver's own refusals.

The resource bombs run in a child process with a memory cap (RLIMIT_AS) and a time limit, so a
regression shows up as a failed test rather than a machine out of memory.
"""

from __future__ import annotations

import ast
import collections
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from probe_util import MEMORY_CAP_MB, probe
from safetensors.torch import save_file
from test_checkpoints import _as_persistent, _install_fake_nvidia_modules, _Persistent

import hrinv_nb
from hrinv_nb.checkpoints import _sniff, load_networks, save_networks
from hrinv_nb.errors import CheckpointError, FileFormatError, HrinvError, UnsafePickleError
from hrinv_nb.torch_files import load_torch_file
from hrinv_nb.toy.training import TrainConfig, train
from hrinv_nb.toy.world import load_state_generator

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- small networks and files


def tiny_nets(seed: int = 0, mapping_layers: int = 2) -> tuple[hrinv_nb.Generator, hrinv_nb.Discriminator]:
    """An 8x8 G and D small enough to save, load and fuzz hundreds of times in seconds."""
    torch.manual_seed(seed)
    G = hrinv_nb.Generator(
        8,
        0,
        8,
        8,
        3,
        mapping_kwargs={"num_layers": mapping_layers},
        synthesis_kwargs={"channel_base": 64, "channel_max": 8, "conv_clamp": 256},
    )
    D = hrinv_nb.Discriminator(
        0, 8, 3, channel_base=64, channel_max=8, conv_clamp=256, epilogue_kwargs={"mbstd_group_size": 2}
    )
    return G, D


def nvidia_snapshot(path: Path, G, D, monkeypatch, protocol: int | None = None, src: str = "pass\n", **extra) -> Path:
    """A pickle structured like NVIDIA's network-snapshot-*.pkl (see tests/test_checkpoints.py)."""
    easydict = _install_fake_nvidia_modules(monkeypatch)

    def kw(d):
        return easydict({k: (easydict(v) if isinstance(v, dict) else v) for k, v in d.items()})

    snapshot = {
        "training_set_kwargs": easydict(path="x.zip", resolution=G.img_resolution),
        "G": _as_persistent(G, kw(G.init_kwargs), easydict, src),
        "D": _as_persistent(D, kw(D.init_kwargs), easydict, src),
        "G_ema": _as_persistent(G, kw(G.init_kwargs), easydict, src),
        "augment_pipe": None,
        **extra,
    }
    with open(path, "wb") as f:
        pickle.dump(snapshot, f, protocol=protocol)
    return path


class _Reduce:
    """Pickles as ``func(*args)`` (the allow-listed global is named, nothing here is called)."""

    def __init__(self, func, args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


class _CreatesMarker:
    """A payload that creates ``marker`` when it is unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def legacy_storage_blob(numel: int, stored_numel: int | None = None, payload: bytes = b"") -> bytes:
    """A legacy torch.save stream of one float storage that *declares* ``numel`` elements."""
    ref = object()

    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", numel, None) if obj is ref else None

    f = io.BytesIO()
    for obj in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(obj, f, protocol=2)
    _Pickler(f, protocol=2).dump(ref)
    pickle.dump(["0"], f, protocol=2)
    f.write(struct.pack("<q", numel if stored_numel is None else stored_numel))
    f.write(payload)
    return f.getvalue()


def _zip_pt_declaring(numel: int) -> bytes:
    """A torch.save zip whose data.pkl declares a float storage of ``numel`` elements; the record holds 8 bytes."""
    ref = object()

    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", numel) if obj is ref else None

    pkl = io.BytesIO()
    tensor = _Reduce(torch._utils._rebuild_tensor_v2, (ref, 0, (2,), (1,), False, collections.OrderedDict()))
    _Pickler(pkl, protocol=2).dump({"G.x": tensor})
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl.getvalue())
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/data/0", b"\0" * 8)
        z.writestr("archive/version", "3\n")
    return out.getvalue()


def laughs(depth: int) -> list:
    """A list whose expansion has 2**depth leaves, pickled in a few bytes per level (shared references)."""
    x: list = []
    for _ in range(depth):
        x = [x, x]
    return x


def _asm_laughs_tuple_key(depth: int) -> bytes:
    """{t: 0} with t = (t', t'), depth levels: hashing t once costs 2**depth steps."""
    out = [b"\x80\x02}", b")", b"q\x00", b"0"]  # PROTO, EMPTY_DICT, EMPTY_TUPLE, BINPUT 0, POP
    for i in range(depth):  # BINGET i, BINGET i, TUPLE2, BINPUT i+1, POP
        out += [b"h" + bytes([i]), b"h" + bytes([i]), b"\x86", b"q" + bytes([i + 1]), b"0"]
    out += [b"h" + bytes([depth]), b"K\x00", b"s", b"."]  # BINGET depth, BININT1 0, SETITEM, STOP
    return b"".join(out)


def _in_generator_kwargs(replacement: bytes, monkeypatch) -> bytes:
    """A snapshot pickle whose G_ema record has ``replacement`` (raw opcodes) as its z_dim argument."""
    easydict = _install_fake_nvidia_modules(monkeypatch)
    stub = _Persistent("Generator", {"_init_kwargs": easydict(z_dim="PLACEHOLDER")}, "pass\n")
    data = pickle.dumps({"G_ema": stub}, protocol=2)
    placeholder = b"X\x0b\x00\x00\x00PLACEHOLDER"
    assert data.count(placeholder) == 1
    return data.replace(placeholder, replacement)


# ----------------------------------------------------------------------------- 1: format sniffing


def test_every_save_is_sniffed_as_safetensors_even_when_its_first_byte_is_0x80(tmp_path):
    G, D = tiny_nets()
    G3, _ = tiny_nets(mapping_layers=3)
    first_0x80 = 0
    for i in range(320):  # metadata sizes step by 2 bytes; key sets vary with D / a 3-layer mapping
        g, half = (G3 if i % 3 == 2 else G), i % 7 == 0
        path = save_networks(
            tmp_path / f"n{i}.safetensors",
            G=g,
            D=D if i % 2 else None,
            meta={"note": "x" * (2 * i), **({"seed": i} if i % 5 == 0 else {})},
            half=half,
        )
        assert _sniff(path) == "safetensors", f"save {i} (first byte {path.read_bytes()[0]:#x}) not sniffed"
        if path.read_bytes()[:1] == b"\x80":
            first_0x80 += 1
            nets = load_networks(path)
            assert nets.meta["format"] == "safetensors" and nets.meta["note"] == "x" * (2 * i)
            assert (nets.D is not None) == bool(i % 2)
            expected = [t.half().float() if half else t for t in g.state_dict().values()]
            assert all(torch.equal(a, b) for a, b in zip(nets.G.state_dict().values(), expected))
        path.unlink()
    assert first_0x80 >= 6, "the test must cover saves whose header length starts with 0x80"


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".pkl", ".bin"])
def test_crafted_safetensors_with_header_lengths_128_mod_256_are_sniffed(tmp_path, suffix):
    # Headers of 128, 384, 640 ... bytes start with 0x80, the byte a pickle starts with.
    for pad in range(0, 1200, 8):
        path = tmp_path / f"x{pad}{suffix}"
        save_file({"G.w": torch.zeros(2)}, str(path), metadata={"p": "y" * pad})
        assert _sniff(path) == "safetensors"


@pytest.mark.parametrize("protocol", range(6))
def test_pickles_and_torch_zips_are_still_sniffed(tmp_path, protocol):
    path = tmp_path / "a.pkl"
    path.write_bytes(pickle.dumps({"G_ema": [1, 2]}, protocol=protocol))
    assert _sniff(path) == "pickle"
    pt = tmp_path / "a.pt"
    pt.write_bytes(path.read_bytes())
    assert _sniff(pt) == "torch"
    torch.save({"x": torch.zeros(1)}, tmp_path / "z.pkl")
    assert _sniff(tmp_path / "z.pkl") == "torch"


# ----------------------------------------------------------------------------- 3: training states


def _state_with_payload(path: Path, marker: Path) -> Path:
    G, D = tiny_nets()
    state = {"G": G.state_dict(), "D": D.state_dict(), "G_ema": G.state_dict(), "payload": _CreatesMarker(marker)}
    torch.save(state, path)
    return path


def test_a_malicious_training_state_runs_in_neither_loader(tmp_path):
    marker = tmp_path / "marker"
    (tmp_path / "run").mkdir()
    state = _state_with_payload(tmp_path / "run" / "state.pt", marker)
    with pytest.raises(CheckpointError) as info:
        load_state_generator(state)
    assert "state.pt" in str(info.value) and "weights_only" not in str(info.value)
    assert not marker.exists()

    G, D = tiny_nets()
    with pytest.raises(CheckpointError) as info:
        train(
            G,
            D,
            lambda b, g: (None, torch.zeros(b, 3, 8, 8)),
            TrainConfig(steps=1, batch=2),
            out_dir=tmp_path / "run",
            progress=False,
        )
    assert "state.pt" in str(info.value) and "weights_only" not in str(info.value)
    assert not marker.exists()


def test_training_states_still_resume_and_load(tmp_path):
    G = hrinv_nb.Generator(
        16, 0, 16, 16, 3, mapping_kwargs={"num_layers": 2}, synthesis_kwargs={"channel_base": 128, "channel_max": 16}
    )
    D = hrinv_nb.Discriminator(0, 16, 3, channel_base=128, channel_max=16, epilogue_kwargs={"mbstd_group_size": 2})
    data = lambda b, g: (torch.randn(b, 16, generator=g), torch.zeros(b, 3, 16, 16), None)
    cfg = TrainConfig(steps=1, batch=2, checkpoint_every=1)
    train(G, D, data, cfg, out_dir=tmp_path, progress=False)
    res = train(G, D, data, TrainConfig(**{**cfg.__dict__, "steps": 2}), out_dir=tmp_path, progress=False)
    assert len(res.history) == 2  # resumed after step 1
    state = load_torch_file(tmp_path / "state.pt")
    assert isinstance(state["config"], dict) and isinstance(state["opt_g"], dict)


# ----------------------------------------------------------------------------- 3: source scan


_TORCH_LOAD = {"torch.load", "torch.serialization.load"}
_PICKLE_LOADS = {
    f"{m}.{f}" for m in ("pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib") for f in ("load", "loads")
} | {"pandas.read_pickle"}
_UNPICKLERS = {"pickle.Unpickler", "pickle._Unpickler", "_pickle.Unpickler"}


def unsafe_loads(source: str) -> list[str]:
    """Calls that may unpickle without restrictions: torch.load without weights_only=True, pickle.load(s),
    numpy.load with allow_pickle other than False, a bare pickle.Unpickler, and Unpickler subclasses
    that do not override find_class."""
    tree = ast.parse(source)
    alias: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                alias[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                alias[a.asname or a.name] = f"{node.module}.{a.name}"

    def qualname(expr: ast.expr) -> str | None:
        parts = []
        while isinstance(expr, ast.Attribute):
            parts.append(expr.attr)
            expr = expr.value
        if not isinstance(expr, ast.Name):
            return None
        base = alias.get(expr.id, expr.id)
        base = {"np": "numpy", "pd": "pandas"}.get(base, base)
        return ".".join([base, *reversed(parts)])

    def kwarg(call: ast.Call, name: str) -> ast.expr | None:
        return next((k.value for k in call.keywords if k.arg == name), None)

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = qualname(node.func)
            where = f"line {node.lineno}: {name}"
            if name in _TORCH_LOAD:
                value = kwarg(node, "weights_only")
                if not (isinstance(value, ast.Constant) and value.value is True):
                    found.append(f"{where} without weights_only=True")
            elif name in _PICKLE_LOADS:
                found.append(where)
            elif name in ("numpy.load",):
                value = kwarg(node, "allow_pickle")
                if value is not None and not (isinstance(value, ast.Constant) and value.value is False):
                    found.append(f"{where} with allow_pickle")
                if any(k.arg is None for k in node.keywords):
                    found.append(f"{where} with **kwargs")
            elif name in _UNPICKLERS:
                found.append(f"{where} (an unrestricted unpickler)")
        elif isinstance(node, ast.ClassDef) and any(qualname(b) in _UNPICKLERS for b in node.bases):
            methods = {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
            if "find_class" not in methods:
                found.append(f"line {node.lineno}: class {node.name} subclasses an unpickler without find_class")
    return found


@pytest.mark.parametrize(
    "code",
    [
        "import torch\ntorch.load(p)",
        "import torch\ntorch.load(p, map_location='cpu', weights_only=False)",
        "import torch\nflag = True\ntorch.load(p, weights_only=flag)",
        "from torch import load\nload(p)",
        "import pickle\npickle.loads(b)",
        "import pickle as pk\npk.load(f)",
        "from pickle import load as L\nL(f)",
        "import numpy as np\nnp.load(p, allow_pickle=True)",
        "import numpy\nnumpy.load(p, allow_pickle=trust)",
        "import pickle\npickle.Unpickler(f).load()",
        "import pickle\nclass U(pickle.Unpickler):\n    pass",
    ],
)
def test_the_source_scan_finds_unsafe_loads(code):
    assert unsafe_loads(code), code


@pytest.mark.parametrize(
    "code",
    [
        "import torch\ntorch.load(p, map_location='cpu', weights_only=True)",
        "import numpy as np\nnp.load(p)\nnp.load(p, allow_pickle=False)",
        "import pickle\nclass U(pickle.Unpickler):\n    def find_class(self, m, n):\n        raise ValueError\n",
        "import pickle\npickle.dumps(x)",
    ],
)
def test_the_source_scan_accepts_safe_loads(code):
    assert not unsafe_loads(code), code


def test_no_module_loads_pickles_unsafely():
    problems = []
    for path in sorted((REPO / "hrinv_nb").rglob("*.py")):
        for problem in unsafe_loads(path.read_text(encoding="utf-8")):
            problems.append(f"{path.relative_to(REPO)} {problem}")
    assert not problems, "unsafe loads:\n" + "\n".join(problems)


# ----------------------------------------------------------------------------- 4: resource bombs


def _bomb_files(d: Path, monkeypatch) -> dict[str, Path]:
    files: dict[str, Path] = {}

    def write(name: str, data: bytes) -> None:
        files[name] = d / name
        files[name].write_bytes(data)

    easydict = _install_fake_nvidia_modules(monkeypatch)
    # A few hundred bytes whose expansion (2**40 leaves) took minutes and GBs in _plain.
    stub = _Persistent("Generator", {"_init_kwargs": easydict(z_dim=laughs(40))}, "pass\n")
    write("laughs_init_kwargs.pkl", pickle.dumps({"G_ema": stub}))
    G, D = tiny_nets()
    nvidia_snapshot(d / "laughs_training_set.pkl", G, D, monkeypatch, training_set_kwargs=laughs(40))
    files["laughs_training_set.pkl"] = d / "laughs_training_set.pkl"
    # Lists nested 200000 deep (an APPEND chain) as a constructor argument: RecursionError in _plain.
    n = 200_000
    write("deep_list.pkl", _in_generator_kwargs(b"]" * n + b"a" * (n - 1), monkeypatch))
    # A tuple nested 1e6 deep used as a dict key: hashing it recursed 1e6 deep in C.
    write("deep_tuple_key.pkl", b"\x80\x02})" + b"\x85" * 1_000_000 + b"K\x00s.")
    # A shared tuple of depth 60 as a dict key: hashing it costs 2**60 steps.
    write("laughs_tuple_key.pkl", _asm_laughs_tuple_key(60))
    # An embedded storage declaring 2**33 floats (32 GiB) in a few hundred bytes.
    storage = _Reduce(torch.storage._load_from_bytes, (legacy_storage_blob(2**33),))
    tensor = _Reduce(torch._utils._rebuild_tensor_v2, (storage, 0, (2,), (1,), False, collections.OrderedDict()))
    write("huge_storage.pkl", pickle.dumps({"G_ema": tensor}, protocol=4))
    # The same as a legacy-format .pt file, and a zip .pt whose data.pkl declares 2**33 floats.
    write("huge_legacy.pt", legacy_storage_blob(2**33))
    write("huge_zip.pt", _zip_pt_declaring(2**33))
    # Allow-listed types called with a huge size.
    write("tensor_call.pkl", pickle.dumps({"G_ema": _Reduce(torch.Tensor, (2**31,))}))
    import numpy as np
    from numpy._core.multiarray import _reconstruct

    write("ndarray_call.pkl", pickle.dumps({"G_ema": _Reduce(np.ndarray, ((2**33,),))}))
    write("np_reconstruct.pkl", pickle.dumps({"G_ema": _Reduce(_reconstruct, (np.ndarray, (2**33,), b"b"))}))
    # Memo index 2**31 - 1 (the C unpickler grows its memo array to it), a 2**40-byte string in 20 bytes.
    write("memo_index.pkl", b"\x80\x02Nr\xff\xff\xff\x7f.")
    write("bytes_length.pkl", b"\x80\x04\x8e" + struct.pack("<Q", 2**40) + b"abc.")
    # BYTEARRAY8 declaring 1 GiB in 15 bytes: pickle's own handler allocates and zeroes it before reading
    # (found by the fuzz test's memory bound); a believable size, so it does not fail at once either.
    write("bytearray_length.pkl", b"\x80\x05\x96" + struct.pack("<Q", 2**30) + b"abc.")
    # A safetensors file of a few hundred bytes declaring a 1024² generator.
    huge = dict(
        z_dim=512,
        c_dim=0,
        w_dim=512,
        img_resolution=1024,
        img_channels=3,
        mapping_kwargs={"num_layers": 8},
        synthesis_kwargs={"channel_base": 2**20, "channel_max": 4096},
    )
    save_file(
        {"G.x": torch.zeros(1)},
        str(d / "huge_generator.safetensors"),
        metadata={"generator_init_kwargs": json.dumps(huge)},
    )
    files["huge_generator.safetensors"] = d / "huge_generator.safetensors"
    # Correct structure, but a 65536-wide hidden mapping layer (a 16 GiB weight) the file does not hold.
    G3, _ = tiny_nets(mapping_layers=3)
    wide = {**G3.init_kwargs, "mapping_kwargs": {"num_layers": 3, "layer_features": 65536}}
    for pad in range(8):  # (a header length that starts with 0x80 would hit the sniffing bug instead)
        save_file(
            {f"G.{k}": v.contiguous() for k, v in G3.state_dict().items()},
            str(d / "wide_mapping.safetensors"),
            metadata={"generator_init_kwargs": json.dumps(wide), "pad": "p" * 8 * pad},
        )
        if (d / "wide_mapping.safetensors").read_bytes()[:1] != b"\x80":
            break
    files["wide_mapping.safetensors"] = d / "wide_mapping.safetensors"
    return files


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> tuple[dict[str, Path], dict[str, dict]]:
    d = tmp_path_factory.mktemp("bombs")
    with pytest.MonkeyPatch.context() as mp:
        files = _bomb_files(d, mp)
    return files, probe(list(files.values()))


BOMBS = [
    "laughs_init_kwargs.pkl",
    "laughs_training_set.pkl",
    "deep_list.pkl",
    "deep_tuple_key.pkl",
    "laughs_tuple_key.pkl",
    "huge_storage.pkl",
    "huge_legacy.pt",
    "huge_zip.pt",
    "tensor_call.pkl",
    "ndarray_call.pkl",
    "np_reconstruct.pkl",
    "memo_index.pkl",
    "bytes_length.pkl",
    "bytearray_length.pkl",
    "huge_generator.safetensors",
    "wide_mapping.safetensors",
]


@pytest.mark.parametrize("name", BOMBS)
def test_small_hostile_files_are_refused_quickly_and_cheaply(bombs, name):
    files, results = bombs
    result = results[str(files[name])]
    assert files[name].stat().st_size < 3_000_000
    assert result["error"] in ("CheckpointError", "UnsafePickleError"), result
    assert name in result["message"], result["message"]
    assert "MemoryError" not in result["chain"] and "can't allocate" not in result["message"], result
    assert result["seconds"] < 5, result
    assert result["rss_growth_mb"] < 300, result


def test_the_probe_sees_memory_and_time():
    # The cap is real: a load that needs more than the cap fails in the child (here: a plain allocation).
    code = (
        "import resource, torch\n"
        "vm = int(open('/proc/self/status').read().split('VmSize:')[1].split()[0]) * 1024\n"
        f"resource.setrlimit(resource.RLIMIT_AS, (vm + {MEMORY_CAP_MB} * 2**20, resource.getrlimit(resource.RLIMIT_AS)[1]))\n"
        "try:\n    torch.ones(2**31)\nexcept (RuntimeError, MemoryError):\n    print('capped')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "capped" in out.stdout, out.stderr[-2000:]


def test_legacy_format_pt_files_still_load(tmp_path):
    G, _ = tiny_nets()
    path = tmp_path / "legacy.pt"
    torch.save(
        {"G": G.state_dict(), "generator_init_kwargs": json.dumps(G.init_kwargs)},
        path,
        _use_new_zipfile_serialization=False,
    )
    assert path.read_bytes()[:1] == b"\x80"
    nets = load_networks(path)
    assert all(torch.equal(a, b) for a, b in zip(nets.G.state_dict().values(), G.state_dict().values()))


# ----------------------------------------------------------------------------- 8: weights


@pytest.mark.parametrize("bad", ["nan", "inf", "int64", "bool"])
@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_non_finite_and_non_float_weights_are_refused(tmp_path, bad, fmt):
    G, _ = tiny_nets()
    sd = {k: v.clone() for k, v in G.state_dict().items()}
    key = "synthesis.b8.conv0.weight"
    if bad == "nan":
        sd[key].view(-1)[3] = float("nan")
    elif bad == "inf":
        sd[key].view(-1)[0] = float("-inf")
    else:
        sd[key] = sd[key].round().to(getattr(torch, bad))
    path = tmp_path / f"bad_{bad}.{fmt}"
    if fmt == "safetensors":
        save_file(
            {f"G.{k}": v for k, v in sd.items()},
            str(path),
            metadata={"generator_init_kwargs": json.dumps(G.init_kwargs)},
        )
    else:
        torch.save({"G": sd, "generator_init_kwargs": json.dumps(G.init_kwargs)}, path)
    with pytest.raises(CheckpointError) as info:
        load_networks(path)
    assert path.name in str(info.value) and key in str(info.value)
    assert ("non-finite" in str(info.value)) == (bad in ("nan", "inf"))


# ----------------------------------------------------------------------------- 9: errors name the file


def _bad_files(d: Path, monkeypatch) -> dict[str, tuple[Path, str]]:
    """name -> (file, a word the message must contain besides the file name)."""
    G, D = tiny_nets()
    out: dict[str, tuple[Path, str]] = {}
    st = save_networks(d / "ok.safetensors", G=G, D=D)
    pkl = nvidia_snapshot(d / "ok.pkl", G, D, monkeypatch)
    pt = d / "ok.pt"
    torch.save(
        {**{f"G.{k}": v for k, v in G.state_dict().items()}, "generator_init_kwargs": json.dumps(G.init_kwargs)}, pt
    )
    for src in (st, pkl, pt):
        for frac in (0.02, 0.5, 0.97):
            cut = d / f"truncated_{int(frac * 100)}{src.suffix}"
            cut.write_bytes(src.read_bytes()[: int(src.stat().st_size * frac)])
            out[cut.name] = (cut, "")
    sd = {f"G.{k}": v.contiguous() for k, v in G.state_dict().items()}

    def st_with(name: str, kwargs_text: str, word: str) -> None:
        save_file(sd, str(d / name), metadata={"generator_init_kwargs": kwargs_text})
        out[name] = (d / name, word)

    st_with("bad_json.safetensors", '{"z_dim": 8,', "generator_init_kwargs")
    st_with("json_list.safetensors", "[1, 2]", "generator_init_kwargs")
    st_with("resolution_3.safetensors", json.dumps({**G.init_kwargs, "img_resolution": 3}), "img_resolution")
    st_with("zero_inputs.safetensors", json.dumps({**G.init_kwargs, "z_dim": 0}), "z_dim")  # 1/sqrt(0)
    st_with("string_dim.safetensors", json.dumps({**G.init_kwargs, "w_dim": "8"}), "w_dim")
    st_with(
        "nan_kwarg.safetensors",
        json.dumps({**G.init_kwargs, "synthesis_kwargs": {"conv_clamp": float("nan")}}),
        "conv_clamp",
    )
    # A network record that contains itself.
    easydict = _install_fake_nvidia_modules(monkeypatch)
    # 1000 leading entries make the pickler set them (one SETITEMS batch) before the record is built.
    state = {
        **{f"pad{i}": 0 for i in range(1000)},
        "_parameters": collections.OrderedDict(),
        "_init_kwargs": easydict(G.init_kwargs),
    }
    stub = _Persistent("Generator", state, "pass\n")
    state["_modules"] = collections.OrderedDict(synthesis=stub)
    (d / "self_ref.pkl").write_bytes(pickle.dumps({"state": state, "G_ema": stub}))
    out["self_ref.pkl"] = (d / "self_ref.pkl", "self-referential")
    # A torch .pt whose pickle names os.system (torch's own message recommends the unsafe option).
    torch.save({"G.x": _Reduce(os.system, ("true",))}, d / "global.pt")
    out["global.pt"] = (d / "global.pt", "system")
    # A .pt whose records are deflated (a decompression bomb in waiting).
    with zipfile.ZipFile(pt) as zin, zipfile.ZipFile(d / "deflated.pt", "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
    out["deflated.pt"] = (d / "deflated.pt", "compressed")
    # Tensor data declared larger than the archive holds.
    bad = io.BytesIO()
    with zipfile.ZipFile(pt) as zin, zipfile.ZipFile(bad, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info.filename, data[: len(data) // 2] if "/data/" in info.filename else data)
    (d / "short_records.pt").write_bytes(bad.getvalue())
    out["short_records.pt"] = (d / "short_records.pt", "")
    # A protocol-2 pickle that is not a snapshot and a random file.
    (d / "not_snapshot.pkl").write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    out["not_snapshot.pkl"] = (d / "not_snapshot.pkl", "snapshot")
    (d / "noise.pkl").write_bytes(b"\x80\x04" + bytes(range(256)) * 4)
    out["noise.pkl"] = (d / "noise.pkl", "")
    return out


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        return _bad_files(tmp_path_factory.mktemp("bad"), mp)


BAD = [
    "truncated_2.safetensors",
    "truncated_50.safetensors",
    "truncated_97.safetensors",
    "truncated_2.pkl",
    "truncated_50.pkl",
    "truncated_97.pkl",
    "truncated_2.pt",
    "truncated_50.pt",
    "truncated_97.pt",
    "bad_json.safetensors",
    "json_list.safetensors",
    "resolution_3.safetensors",
    "zero_inputs.safetensors",
    "string_dim.safetensors",
    "nan_kwarg.safetensors",
    "self_ref.pkl",
    "global.pt",
    "deflated.pt",
    "short_records.pt",
    "not_snapshot.pkl",
    "noise.pkl",
]


@pytest.mark.parametrize("name", BAD)
def test_every_refusal_is_a_checkpoint_error_naming_the_file_and_reason(bad_files, name):
    path, word = bad_files[name]
    with pytest.raises(CheckpointError) as info:
        load_networks(path)
    message = str(info.value)
    assert str(path) in message and word in message, message
    assert "weights_only" not in message, message
    assert isinstance(info.value, FileFormatError) and isinstance(info.value, HrinvError)


def test_error_types():
    assert issubclass(CheckpointError, FileFormatError) and issubclass(CheckpointError, ValueError)
    assert issubclass(UnsafePickleError, pickle.UnpicklingError)
    assert issubclass(UnsafePickleError, CheckpointError) and issubclass(UnsafePickleError, HrinvError)
    err = UnsafePickleError("os", "system", "/x/evil.pkl")
    assert "/x/evil.pkl" in str(err) and err.global_name == "os.system"
    assert str(pickle.loads(pickle.dumps(err))) == str(err)


def test_a_hostile_global_is_refused_by_name_with_the_file(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": {"x": [_CreatesMarker(marker)]}}, protocol=2))
    with pytest.raises(UnsafePickleError) as info:
        load_networks(path)
    assert "evil.pkl" in str(info.value) and ".open'" in str(info.value)
    assert not marker.exists()


def test_missing_file_stays_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_networks(tmp_path / "ffhq.pkl")
    assert "ffhq.pkl" in str(info.value) and "data/pretrained" in str(info.value)


# ----------------------------------------------------------------------------- 12: protocols and the saver


@pytest.mark.parametrize("protocol", range(6))
def test_snapshot_pickles_of_every_protocol_load(tmp_path, monkeypatch, protocol):
    G, D = tiny_nets()
    path = nvidia_snapshot(tmp_path / f"snap{protocol}.pkl", G, D, monkeypatch, protocol=protocol)
    if protocol < 3:
        assert b"__builtin__\nset" in path.read_bytes()
    nets = load_networks(path)
    for a, b in ((nets.G, G), (nets.D, D)):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert nets.meta["training_set_kwargs"] == {"path": "x.zip", "resolution": 8}


@pytest.mark.parametrize("key", ["generator_init_kwargs", "discriminator_class", "num_ws", "format"])
def test_meta_may_not_override_what_the_saver_writes(tmp_path, key):
    G, D = tiny_nets()
    with pytest.raises(HrinvError, match=key):
        save_networks(tmp_path / "x.safetensors", G=G, D=D, meta={key: {"z_dim": 1}})
    assert not (tmp_path / "x.safetensors").exists()


def test_a_discriminator_alone_is_refused_at_save_time(tmp_path):
    # load_networks always returns a generator, so a D-only file could never be loaded: refuse to write it.
    _, D = tiny_nets()
    with pytest.raises(HrinvError, match="needs G"):
        save_networks(tmp_path / "d.safetensors", D=D)
    assert not (tmp_path / "d.safetensors").exists()
