"""Restricted unpickler: numpy weights load, code-executing pickles are refused before running."""
from __future__ import annotations

import collections
import os
import pickle

import numpy as np
import pytest

from seg_perception.models.convert.safe_pickle import UnsafePickleError, load_path, loads


class _Touch:
    """Pickles to ``os.system("touch <path>")``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


class _Eval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


class Plain:
    """An ordinary class from a module that is not numpy."""

    def __init__(self) -> None:
        self.x = 1


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpy_weights_round_trip(protocol: int, tmp_path) -> None:
    rng = np.random.default_rng(0)
    model = collections.OrderedDict(
        [("backbone.stem.conv1.weight", rng.standard_normal((4, 3, 3, 3)).astype(np.float32)),
         ("sem_seg_head.predictor.bias", np.arange(5, dtype=np.float64)),
         ("ids", np.array([[1, 2], [3, 4]], dtype=np.int64))]
    )
    obj = {"model": model, "__author__": "Detectron2 Model Zoo", "matching_heuristics": True,
           "scale": np.float32(0.5), "list": [1, 2.5, None, (3, "a")], "raw": b"\x00\x01"}
    path = tmp_path / "w.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    back = load_path(path)
    assert isinstance(back["model"], collections.OrderedDict)
    assert list(back["model"]) == list(model)
    for k, v in model.items():
        assert back["model"][k].dtype == v.dtype
        np.testing.assert_array_equal(back["model"][k], v)
    assert back["scale"] == np.float32(0.5) and back["list"] == [1, 2.5, None, (3, "a")]
    assert back["raw"] == b"\x00\x01" and back["__author__"] == "Detectron2 Model Zoo"


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_os_system_payload_refused_and_not_run(protocol: int, tmp_path) -> None:
    target = tmp_path / "pwned"
    data = pickle.dumps({"model": _Touch(str(target))}, protocol=protocol)
    with pytest.raises(UnsafePickleError) as info:
        loads(data)
    assert "system" in str(info.value)  # names the refused global (posix.system / nt.system)
    assert not target.exists()
    # sanity check that the payload is real: plain pickle would have created the file
    pickle.loads(data)
    assert target.exists()


def test_builtins_eval_refused() -> None:
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        loads(pickle.dumps(_Eval(), protocol=2))


def test_class_from_other_module_refused() -> None:
    with pytest.raises(UnsafePickleError, match=r"test_safe_pickle\.Plain"):
        loads(pickle.dumps({"x": Plain()}))
    with pytest.raises(UnsafePickleError, match="collections.Counter"):
        loads(pickle.dumps(collections.Counter("ab")))


def test_refused_error_is_an_unpickling_error() -> None:
    assert issubclass(UnsafePickleError, pickle.UnpicklingError)
