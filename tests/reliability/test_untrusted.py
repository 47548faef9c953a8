"""Area 4: files from the internet never run code and never reach outside their root.

* Pickles whose ``__reduce__`` would run a command (it would write a marker file) are
  refused by the restricted unpickler, wherever they are met (the annotation loader,
  ``prepare``), and the marker never appears; so are pickles asking a builtin for
  unbounded memory.
* Checkpoints load with safetensors only: a pickled ``.pt`` with a payload, under any
  name, is refused with a CheckpointError naming it (library and command line).
* Every loader in ``src/`` is checked statically: ``torch.load`` with
  ``weights_only=True``, ``np.load`` without pickles, ``yaml.safe_load``, no other
  unpickling than ``io/files.py``'s.
* Manifest paths: ``../..``, absolute paths, NUL bytes, the root itself, symlinks (to
  files or folders) out of the root, symlink loops: refused, naming manifest and line.
"""

from __future__ import annotations

import ast
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from patchvad.errors import CheckpointError, UnsafeFileError
from patchvad.io.files import safe_pickle_load

from .helpers import patchvad, smooth_frames

SRC = Path(__file__).resolve().parents[2] / "src" / "patchvad"


class _Payload:
    """Unpickling this runs ``command`` through ``runner`` (os.system, subprocess, eval...)."""

    def __init__(self, runner, command):
        self.runner, self.command = runner, command

    def __reduce__(self):
        return (self.runner, (self.command,))


def _payloads(marker: Path) -> dict[str, object]:
    shell = f"touch {marker}"
    return {
        "os.system": _Payload(os.system, shell),
        "subprocess.call": _Payload(subprocess.call, ["touch", str(marker)]),
        "eval": _Payload(eval, f"__import__('os').system({shell!r})"),
        "exec": _Payload(exec, f"open({str(marker)!r}, 'w').close()"),
        "nested": {"Abuse028_x264": [["a/image_0001.jpg", 1, 2, 3, 4]], "x": [_Payload(os.system, shell)]},
    }


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_pickle_that_would_run_code_is_refused(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    for name, payload in _payloads(marker).items():
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(pickle.dumps(payload, protocol=protocol))
        with pytest.raises(UnsafeFileError, match="refused to unpickle") as err:
            safe_pickle_load(path)
        assert str(err.value).startswith(f"{path}: "), name
        assert not marker.exists(), f"{name} (protocol {protocol}) ran its payload"
    # The same file read the unsafe way would have run it: the test's payloads are live.
    pickle.loads(pickle.dumps(_payloads(marker)["os.system"]))
    assert marker.exists()


BOMBS = {
    "bytes": b"c__builtin__\nbytes\n(I1000000000000000\ntR.",                                # bytes(10**15)
    "bytearray": b"c__builtin__\nbytearray\n(I1000000000000000\ntR.",
    "list-range": b"c__builtin__\nlist\n(c__builtin__\nrange\n(I1000000000000000\ntRtR.",   # list(range(10**15))
    "set-huge-range": b"c__builtin__\nset\n(c__builtin__\nrange\n(I0\nI99999999999999999999999\ntRtR.",
    "tuple-range": b"c__builtin__\ntuple\n(c__builtin__\nrange\n(I1000000000000000\ntRtR.",
}
_BOMB_CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))   # if the guard ever goes, fail here, not the machine
from patchvad.io.files import safe_pickle_load
for path in sys.argv[1:]:
    try:
        safe_pickle_load(path)
        print(path, "loaded")
    except BaseException as exc:
        print(path, type(exc).__name__, str(exc).split(": ", 1)[-1][:160])
"""


def test_pickle_asking_for_unbounded_memory_is_refused(tmp_path: Path) -> None:
    """A few bytes of pickle asking a builtin for 10**15 items: refused before allocating.

    Run in a child process under a 2 GB address-space limit, so that a regression
    fails this test instead of exhausting the machine's memory.
    """
    paths = []
    for name, data in BOMBS.items():
        paths.append(tmp_path / f"{name}.pkl")
        paths[-1].write_bytes(data)
    child = subprocess.run([sys.executable, "-c", _BOMB_CHILD, *map(str, paths)], capture_output=True, text=True,
                           timeout=120)
    lines = child.stdout.splitlines()
    assert len(lines) == len(BOMBS), child.stderr[-2000:]
    for path, line in zip(paths, lines):
        assert line.startswith(f"{path} UnsafeFileError refused to unpickle: global 'builtins."), line
        assert "is not allowed with a size of" in line, line


def test_builtins_pickles_still_load(tmp_path: Path) -> None:
    """The restriction keeps what annotation pickles hold (Liu & Ma boxes: protocol 0 builtins)."""
    data = {"Abuse028_x264": [["Abuse028_x264/image_0170.jpg", 10, 20, 60, 90]], "s": {1, 2}, "f": frozenset({3}),
            "r": range(5), "b": b"\x00\x01", "ba": bytearray(b"xy"), "c": 1 + 2j, "n": None, "t": (1.5, "x")}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        path = tmp_path / f"ok{protocol}.pkl"
        path.write_bytes(pickle.dumps(data, protocol=protocol))
        assert safe_pickle_load(path) == data, protocol


def test_prepare_refuses_a_poisoned_annotation_pickle(tmp_path: Path) -> None:
    """End to end: ``prepare ucf_crime`` meets the payload in Test_annotation.pkl."""
    from patchvad.data.adapters import MediaInfo, prepare_dataset

    from .test_fuzz_adapters import _ucf_tree

    marker = tmp_path / "pwned"
    _ucf_tree(tmp_path / "src", "Test_annotation.pkl", pickle.dumps(_payloads(marker)["nested"], protocol=0))
    with pytest.raises(UnsafeFileError, match="Test_annotation.pkl: refused to unpickle"):
        prepare_dataset("ucf_crime", tmp_path / "src", tmp_path / "out", strict=False,
                        probe=lambda p: MediaInfo(600, 320, 240, 30.0), workers=1)
    assert not marker.exists() and not (tmp_path / "out" / "manifest.csv").exists()


# --- checkpoints -------------------------------------------------------------------------------


def _evil_checkpoints(tmp_path: Path, marker: Path) -> list[Path]:
    """A torch-style pickled checkpoint with a payload, under the names a user might give it."""
    import torch

    state = {"state_dict": {"w": torch.zeros(2)}, "hook": _Payload(os.system, f"touch {marker}")}
    paths = [tmp_path / "model.pt", tmp_path / "model.safetensors", tmp_path / "model.ckpt"]
    for path in paths:
        torch.save(state, path)          # a zip of pickles, as torch writes them
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps(state))
    return [*paths, tmp_path / "plain.pkl"]


def test_pickled_checkpoint_is_refused_by_every_loader(tmp_path: Path) -> None:
    from patchvad.model.model import load_model, read_metadata
    from patchvad.predict import Detector

    marker = tmp_path / "pwned"
    for path in _evil_checkpoints(tmp_path, marker):
        for load in (load_model, read_metadata, Detector):
            with pytest.raises(CheckpointError) as err:
                load(path)
            assert str(err.value).startswith(f"{path}: ") and "safetensors" in str(err.value)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickled_backbone_weights_load_weights_only(tmp_path: Path) -> None:
    """Optional hub backbones fall back to .pt weights: torch.load(weights_only=True) refuses the payload."""
    from patchvad.errors import FeatureError

    hub = pytest.importorskip("patchvad.features.backbones.hub")
    marker = tmp_path / "pwned"
    for path in _evil_checkpoints(tmp_path, marker)[:1] + _evil_checkpoints(tmp_path, marker)[2:]:
        with pytest.raises(FeatureError, match="cannot read the weights"):
            hub.load_state_dict(path)
    assert not marker.exists()


def test_command_line_refuses_pickled_checkpoint(tmp_path: Path) -> None:
    from patchvad.io.video import write_video

    marker = tmp_path / "pwned"
    evil = _evil_checkpoints(tmp_path, marker)[0]
    write_video(tmp_path / "clip.mp4", smooth_frames(8, 64, 48), fps=25)
    result = patchvad("predict", tmp_path / "clip.mp4", "--ckpt", evil, "--out", tmp_path / "out", check=False)
    assert result.returncode == 2 and f"{evil}: not a safetensors file" in result.stderr
    assert "Traceback" not in result.stderr and not marker.exists()


def _calls(tree: ast.AST, dotted: str) -> list[ast.Call]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if name == dotted or name.endswith("." + dotted):
                out.append(node)
    return out


def test_no_loader_in_the_package_can_unpickle_untrusted_data() -> None:
    """Static check of every module: the safe loaders only."""
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        where = lambda node: f"{path.relative_to(SRC)}:{node.lineno}"  # noqa: E731
        for call in _calls(tree, "torch.load"):
            kw = {k.arg: ast.unparse(k.value) for k in call.keywords}
            if kw.get("weights_only") != "True":
                problems.append(f"{where(call)}: torch.load without weights_only=True")
        for call in _calls(tree, "np.load") + _calls(tree, "numpy.load"):
            kw = {k.arg: ast.unparse(k.value) for k in call.keywords}
            if kw.get("allow_pickle", "False") != "False":
                problems.append(f"{where(call)}: np.load with allow_pickle")
        for name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "pickle.load", "pickle.loads",
                     "marshal.loads", "dill.load", "joblib.load", "shelve.open"):
            for call in _calls(tree, name):
                problems.append(f"{where(call)}: {name}")
        if path.name != "files.py" or path.parent.name != "io":
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and node.attr in ("Unpickler", "_Unpickler"):
                    problems.append(f"{where(node)}: an unpickler outside io/files.py")
    assert problems == []


# --- paths -------------------------------------------------------------------------------------


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    (root / "videos").mkdir(parents=True)
    (root / "videos" / "ok.mp4").write_bytes(b"")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.mp4").write_bytes(b"")
    (root / "videos" / "link_out.mp4").symlink_to(tmp_path / "outside" / "secret.mp4")
    (root / "videos" / "dir_out").symlink_to(tmp_path / "outside", target_is_directory=True)
    (root / "videos" / "link_in.mp4").symlink_to(root / "videos" / "ok.mp4")
    (root / "videos" / "loop.mp4").symlink_to(root / "videos" / "loop.mp4")
    return root


@pytest.mark.parametrize("video,problem", [
    ("../../etc/passwd", "leaves the dataset root"),
    ("videos/../../outside/secret.mp4", "leaves the dataset root"),
    ("/etc/passwd", "absolute path"),
    ("videos/link_out.mp4", "leaves the dataset root"),
    ("videos/dir_out/secret.mp4", "leaves the dataset root"),
    ("videos/ok\x00.mp4", "NUL byte"),
    (".", "names the dataset root itself"),
    ("videos/..", "names the dataset root itself"),
    ("videos/loop.mp4", "cannot be resolved|leaves the dataset root|not found"),
])
def test_manifest_path_out_of_the_root_is_refused(root: Path, video: str, problem: str) -> None:
    from patchvad.data.folder import read_manifest
    from patchvad.errors import DatasetError

    (root / "manifest.csv").write_text(f"video,split,label\nvideos/ok.mp4,train,0\n{video},train,1\n")
    with pytest.raises((UnsafeFileError, DatasetError), match=problem) as err:
        read_manifest(root)
    assert str(err.value).startswith(f"{root / 'manifest.csv'}:3: ")


def test_symlink_inside_the_root_is_fine(root: Path) -> None:
    from patchvad.data.folder import read_manifest

    (root / "manifest.csv").write_text("video,split,label\nvideos/link_in.mp4,train,0\n")
    assert read_manifest(root)[0].path == (root / "videos" / "ok.mp4").resolve()


def test_prediction_stem_cannot_leave_the_predictions_folder(tmp_path: Path) -> None:
    from patchvad.errors import PredictionError
    from patchvad.predictions import read_prediction, write_prediction

    for stem in ("..", "../x", "a/b", "", "x\x00"):
        with pytest.raises(PredictionError, match="not a valid video stem"):
            write_prediction(tmp_path / "pred", stem, np.zeros(3))
        with pytest.raises(PredictionError, match="not a valid video stem"):
            read_prediction(tmp_path / "pred", stem)
    assert not (tmp_path / "x").exists()


# --- compiled readers --------------------------------------------------------------------------


def test_mat_file_that_crashes_scipy_is_a_clear_error(tmp_path: Path) -> None:
    """One byte (a data-type code) makes scipy.io.loadmat segfault; the Avenue reader survives it."""
    from patchvad.data.adapters.avenue import read_label_mat
    from patchvad.errors import DatasetError

    from .seeds import AVENUE_SEED

    tag = b"\x09\x00\x00\x00\x80\x01\x00\x00"          # miDOUBLE, 384 bytes: the first mask's data
    assert AVENUE_SEED.count(tag) >= 1
    crasher = bytearray(AVENUE_SEED)
    crasher[AVENUE_SEED.index(tag)] = 21                 # an undefined type code
    path = tmp_path / "1_label.mat"
    path.write_bytes(bytes(crasher))
    probe = subprocess.run([sys.executable, "-c", f"from scipy.io import loadmat; loadmat({str(path)!r})"],
                           capture_output=True)
    with pytest.raises(DatasetError) as err:
        read_label_mat(path)
    assert str(err.value).startswith(f"{path}: ")
    if probe.returncode < 0:                             # this scipy crashes on it: the isolation caught it
        assert "reader crashed" in str(err.value)
    good = tmp_path / "2_label.mat"
    good.write_bytes(AVENUE_SEED)
    assert read_label_mat(good).shape == (2, 6, 8)        # the reader is back for the next file
