"""A backbone folder someone sent you cannot run code: weights load from safetensors only."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest

from shopsim.encoders.backbone import load_backbone, locate_backbone
from shopsim.errors import ShopsimError


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path, str]]:
        return (Path.write_text, (self.marker, "pwned"))


def test_a_pickled_backbone_is_refused_without_running_it(tmp_path: Path) -> None:
    folder = tmp_path / "backbone"
    shutil.copytree(locate_backbone(), folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "marker"
    with (folder / "pytorch_model.bin").open("wb") as fh:
        pickle.dump(_Payload(marker), fh)
    with pytest.raises(ShopsimError, match=r"loads weights only from model\.safetensors") as err:
        load_backbone(folder)
    assert "\n" not in str(err.value)
    assert not marker.exists()
    # the payload is live: unpickling the file does run it
    with (folder / "pytorch_model.bin").open("rb") as fh:
        pickle.load(fh)  # the point of the test
    assert marker.exists()
