"""The shipped anatomy model on real IDRiD photos, run as the pipeline runs it: the photo read
and its field of view found by the haemorrhage model's preprocessing, then
`AnatomyModel.locate` (inference.anatomy.model).

These photos were among the 54 the shipped model was finally fitted on, so this checks the
plumbing (the contract, the one preprocessing, decoding back to full-resolution pixels), not
how well it generalises: the cross-validated figures in its contract and its card do that.
The truths are the disc masks' centroids and equivalent diameters, and the approximate fovea
centres (+-0.2 DD) of ../shared/data/idrid-optic-disc/fovea_train.csv.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from inference.anatomy import Laterality, Origin, summarise
from inference.anatomy.model import AnatomyModel, shipped_anatomy_model_path
from inference.contract import PreprocessRecipe
from inference.errors import ModelContractError
from inference.photo_io import Photo, read_photo
from inference.postprocess import Lesion
from inference.preprocess import decode_min_side, preprocess
from inference.resources import shipped_model_path
from tests.conftest import idrid_photo

# number: (disc centre, disc diameter px, fovea, side)
TRUTH = {
    1: ((3244.6, 1399.4), 521.8, (1890.0, 1462.0), Laterality.RIGHT),
    2: ((728.1, 1265.0), 509.1, (1874.0, 1542.0), Laterality.LEFT),
    4: ((1985.9, 769.3), 483.5, (3242.0, 950.0), Laterality.LEFT),
}

HAEMORRHAGE_RECIPE = PreprocessRecipe(working_size=512)


@pytest.fixture(scope="module")
def model() -> AnatomyModel:
    path = shipped_anatomy_model_path()
    assert path.is_file(), f"the shipped anatomy model is missing at {path}"
    return AnatomyModel.open()


def as_the_pipeline_reads(number: int) -> tuple[Photo, object]:
    photo = read_photo(idrid_photo(number), min_side=decode_min_side(HAEMORRHAGE_RECIPE))
    prepared = preprocess(photo.rgb, HAEMORRHAGE_RECIPE, full_size=(photo.width, photo.height))
    return photo, prepared.geometry.fov


def test_the_shipped_model_describes_itself(model: AnatomyModel) -> None:
    contract = model.contract
    assert contract.model_name == "hemaview-anatomy"
    assert contract.class_names == ("optic_disc", "fovea")
    assert "IDRiD" in contract.attribution and "CC BY 4.0" in contract.attribution
    cv = contract.metrics["cross_validation"]
    assert cv["photos"] == 54 and {"disc_dice_mean", "fovea_within_0.5dd"} <= set(cv)
    assert 0 < contract.decode.fovea_min_confidence < 1
    # the haemorrhage model is not an anatomy model, and says so
    with pytest.raises(ModelContractError, match="not an anatomy model"):
        AnatomyModel.open(shipped_model_path())


@pytest.mark.parametrize("number", sorted(TRUTH))
def test_disc_and_fovea_where_the_truth_is(model: AnatomyModel, number: int) -> None:
    disc_truth, dd, fovea_truth, side = TRUTH[number]
    photo, fov = as_the_pipeline_reads(number)
    anatomy = model.locate(photo, fov)  # type: ignore[arg-type]
    assert anatomy.photo_size == (4288, 2848)
    assert anatomy.disc_center is not None, anatomy.disc_reason
    assert anatomy.fovea is not None, anatomy.fovea_reason
    assert math.dist(anatomy.disc_center, disc_truth) <= 0.25 * dd
    assert anatomy.disc_diameter == pytest.approx(dd, rel=0.2)
    assert math.dist(anatomy.fovea, fovea_truth) <= 0.5 * dd
    assert anatomy.laterality is side
    assert anatomy.disc_origin is Origin.MODEL and anatomy.fovea_origin is Origin.MODEL
    mask = anatomy.disc_mask
    assert mask is not None and mask.shape == (2848, 4288) and mask.dtype == np.bool_
    x, y = (round(v) for v in disc_truth)
    assert mask[y, x] and not mask[round(fovea_truth[1]), round(fovea_truth[0])]
    # a haemorrhage on the fovea is within 1 DD of it, whatever the quadrant
    on_fovea = Lesion(1, (0, 0, 1, 1), 50, anatomy.fovea, 0.9, 0.9)
    assert summarise([on_fovea], anatomy).within_1dd_of_fovea is True
