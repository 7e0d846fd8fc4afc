"""Models pickled before the model room existed (by earlier leadscore versions) still load."""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import pytest

from leadscore.features.vocabulary import InputLayout
from leadscore.model.calibration import IsotonicCalibrator, PlattCalibrator, PriorShiftedCalibrator
from leadscore.model.encoding import CategoryCodeEncoder
from leadscore.model.scoring_model import GradeCutoffs, LeadScoringModel, TierThresholds
from leadscore.model.store import read_model_pickle
from leadscore.model.transforms import ContractFeatureTransform
from leadscore.model.uncertainty import ScoreUncertainty

from ..conftest import Trained

OLD_HOMES: dict[type, str] = {
    LeadScoringModel: "leadscore.training.model",
    TierThresholds: "leadscore.training.model",
    GradeCutoffs: "leadscore.training.model",
    CategoryCodeEncoder: "leadscore.training.encoding",
    IsotonicCalibrator: "leadscore.training.calibration",
    PlattCalibrator: "leadscore.training.calibration",
    PriorShiftedCalibrator: "leadscore.training.calibration",
    ScoreUncertainty: "leadscore.training.uncertainty",
}


class _OldStyle:
    """Pickles as a LeadScoringModel with the fields of earlier versions (flat/events, no transform)."""

    def __init__(self, model: LeadScoringModel) -> None:
        self.state = model.__getstate__()
        del self.state["transform"]
        self.state.pop("touch_cadence", None)  # learned touch ranges came later
        self.state.pop("contact_effect", None)  # and the learned effect of a follow-up after them
        self.state |= {"flat": None, "events": None}

    def __reduce__(self) -> tuple[object, ...]:
        return (object.__new__, (LeadScoringModel,), self.state)


def _saved_by_an_earlier_version(model: LeadScoringModel) -> bytes:
    with pytest.MonkeyPatch.context() as patch:
        modules: dict[str, types.ModuleType] = {}
        for cls, module in OLD_HOMES.items():  # the classes as they were importable then
            old = modules.setdefault(module, types.ModuleType(module))
            setattr(old, cls.__name__, cls)
            patch.setitem(sys.modules, module, old)
            patch.setattr(cls, "__module__", module)
        return pickle.dumps(_OldStyle(model), protocol=pickle.HIGHEST_PROTOCOL)


def test_a_model_pickled_by_an_earlier_version_loads(trained: Trained, tmp_path: Path) -> None:
    model = trained.result.model
    old = _saved_by_an_earlier_version(model)
    assert b"leadscore.training.model" in old and b"leadscore.model." not in old
    assert "leadscore.training.model" not in sys.modules
    path = tmp_path / "scoring_model.pkl"
    path.write_bytes(old)
    with pytest.raises(ModuleNotFoundError):
        pickle.loads(old)  # a plain unpickler cannot find the old module
    loaded = read_model_pickle(path)
    assert isinstance(loaded, LeadScoringModel) and isinstance(loaded.encoder, CategoryCodeEncoder)
    assert isinstance(loaded.transform, ContractFeatureTransform)
    assert loaded.layout is InputLayout.LEADSCORE
    assert loaded.touch_cadence is None  # the follow-up advice falls back to the rule of thumb
    assert loaded.contact_effect is None  # and says there is no estimate of a follow-up's effect
    rows = trained.table.tail(50)
    assert (loaded.predict_proba_features(rows) == model.predict_proba_features(rows)).all()
