"""A fitted simulator folder: catalog, response model, state encoder, logged episodes.

Layout of ``shopsim simulator fit … --out SIM``::

    SIM/simulator.json     version, source data, settings, assumptions, fit summary
    SIM/catalog.npz        item vectors, attributes, train count tables (:class:`Catalog`)
    SIM/model.npz          click / purchase / leave scorers, e(p), numpy state encoder
    SIM/episodes.npz       logged sessions of every split (episode starts)
    SIM/fidelity.json      the fidelity report, plus SIM/plots/*.png
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np

from shopsim.artifacts import verify_artifact, write_artifact
from shopsim.encoders.bundle import NumpyStateEncoder
from shopsim.envs.model.catalog import Catalog
from shopsim.envs.model.episodes import Episodes, interaction_code
from shopsim.envs.model.response import Scorer
from shopsim.errors import ShopsimError

SIMULATOR_VERSION = 1
"""Bumped whenever the folder layout or the model's meaning changes."""
SPLITS = ("train", "valid", "test")
ARTIFACT_KIND = "simulator"
"""Kind of a simulator folder's manifest (:mod:`shopsim.artifacts`)."""
REBUILD = "shopsim simulator fit DATA_DIR --embeddings DIR --out {d}"
OLD_SIMULATOR_FILES = ("catalog.npz", "model.npz", "episodes.npz", "simulator.json", "fidelity.json", "plots")
"""What ``simulator fit`` wrote into its folder before folders had manifests (replaceable)."""


def _unreadable(d: Path, name: str) -> ShopsimError:
    return ShopsimError(f"{d}: file {name} cannot be read; rebuild it with `{REBUILD.format(d=d)}`")


PurchaseMode = Literal["model", "always", "never"]


@dataclass
class Simulator:
    """Everything a :class:`~shopsim.envs.env.ShopperEnv` needs, loaded from one folder."""

    catalog: Catalog
    state_encoder: NumpyStateEncoder
    click: Scorer
    examination: np.ndarray
    """e(p) for p = 1..P (slots past P use e(P))."""
    click_offset: float
    purchase_mode: PurchaseMode
    purchase: Scorer | None
    leave: Scorer
    leave_no_click_logit: float
    episodes: dict[str, Episodes]
    meta: dict[str, Any] = field(default_factory=dict)
    purchase_offset: float = 0.0
    """Added to the purchase logit (calibrated to the logged purchases per session)."""

    @cached_property
    def click_code(self) -> int:
        """Event code a simulated click enters the history with: the log's own interaction code
        (:func:`~shopsim.envs.model.episodes.interaction_code` of the train episodes — view for
        REES46, click for impression logs such as MIND). Derived from the stored episodes, so
        folders written before it existed load with the same rule."""
        train = self.episodes.get("train")
        return int(interaction_code([train] if train is not None and len(train) else self.episodes.values()))

    def save(self, directory: Path) -> None:
        """Write the simulator folder ``directory`` as a verified artifact (written beside it,
        swapped in when complete; see :mod:`shopsim.artifacts`)."""
        with write_artifact(directory, ARTIFACT_KIND, stage="fit", replaces=OLD_SIMULATOR_FILES) as tmp:
            self.write_files(tmp)

    def write_files(self, directory: Path) -> None:
        """Write the simulator's files into the folder ``directory`` (an artifact's temporary
        folder: :meth:`save` and ``save_fit`` wrap it)."""
        directory.mkdir(parents=True, exist_ok=True)
        self.catalog.save(directory / "catalog.npz")
        arrays: dict[str, np.ndarray] = {
            **self.click.arrays("click"),
            **self.leave.arrays("leave"),
            **self.state_encoder.arrays(),
            "examination": self.examination,
        }
        if self.purchase is not None:
            arrays.update(self.purchase.arrays("purchase"))
        np.savez(directory / "model.npz", **arrays)  # type: ignore[arg-type]
        ep: dict[str, np.ndarray] = {}
        for split, e in self.episodes.items():
            ep.update(e.arrays(split))
        np.savez(directory / "episodes.npz", **ep)  # type: ignore[arg-type]
        meta = {
            **self.meta,
            "shopsim_simulator_version": SIMULATOR_VERSION,
            "click_offset": self.click_offset,
            "purchase_offset": self.purchase_offset,
            "purchase_mode": self.purchase_mode,
            "leave_no_click_logit": self.leave_no_click_logit,
            "splits": {s: len(e) for s, e in self.episodes.items()},
        }
        (directory / "simulator.json").write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path | str) -> Simulator:
        """Load a simulator folder after verifying its manifest (every file at its recorded
        size and hash; arrays read with ``allow_pickle=False``).

        :raises ShopsimError: one line naming the folder and the rebuild command, if it is
            missing, incomplete, changed since it was written, or of another version.
        """
        d = Path(directory)
        if not (d / "simulator.json").exists():
            raise ShopsimError(
                f"{d}: not a simulator folder (no simulator.json); "
                f"create one with `shopsim simulator fit DATA_DIR --embeddings DIR --out {d}`"
            )
        try:  # JSON runs no code: read the version first, the most useful message when it differs
            meta = json.loads((d / "simulator.json").read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            meta = None
        version = meta.get("shopsim_simulator_version") if isinstance(meta, dict) else SIMULATOR_VERSION
        if version != SIMULATOR_VERSION:
            raise ShopsimError(
                f"{d}: simulator folder version {version}, this shopsim reads version "
                f"{SIMULATOR_VERSION}; refit it with `{REBUILD.format(d=d)}`"
            )
        for name in ("catalog.npz", "model.npz", "episodes.npz"):
            if not (d / name).exists():
                raise ShopsimError(
                    f"{d}: no {name}; refit it with `shopsim simulator fit` (`{REBUILD.format(d=d)}`)"
                )
        verify_artifact(d, ARTIFACT_KIND, REBUILD.format(d=d))
        if not isinstance(meta, dict):
            raise _unreadable(d, "simulator.json")
        try:
            with np.load(d / "model.npz", allow_pickle=False) as z:
                model = dict(z)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            raise _unreadable(d, "model.npz") from None
        try:
            with np.load(d / "episodes.npz", allow_pickle=False) as z:
                ep = dict(z)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            raise _unreadable(d, "episodes.npz") from None
        try:
            return cls._from_parts(d, meta, model, ep)
        except (OSError, ValueError, EOFError, KeyError, TypeError, IndexError, zipfile.BadZipFile):
            raise _unreadable(d, "catalog.npz, model.npz or episodes.npz") from None

    @classmethod
    def _from_parts(
        cls, d: Path, meta: dict[str, Any], model: dict[str, np.ndarray], ep: dict[str, np.ndarray]
    ) -> Simulator:
        episodes = {s: Episodes.from_arrays(ep, s) for s in SPLITS if f"{s}_session_ids" in ep}
        return cls(
            catalog=Catalog.load(d / "catalog.npz"),
            state_encoder=NumpyStateEncoder.from_arrays(model),
            click=Scorer.from_arrays(model, "click"),
            examination=model["examination"],
            click_offset=float(meta["click_offset"]),
            purchase_mode=meta["purchase_mode"],
            purchase=Scorer.from_arrays(model, "purchase") if "purchase_mean" in model else None,
            leave=Scorer.from_arrays(model, "leave"),
            leave_no_click_logit=float(meta["leave_no_click_logit"]),
            episodes=episodes,
            meta=meta,
            purchase_offset=float(meta.get("purchase_offset", 0.0)),
        )
