"""The anatomy model's contract: the haemorrhage model's (inference.contract), plus one key.

The file describes itself as every Hemaview model does (schema, input, preprocessing recipe,
training data and attribution, metrics, commit, its own SHA-256), so `ModelFile.open`
checks it the same way. Its outputs are the disc probability (`output_name`) and the fovea
distribution (the one `extra_outputs` entry). `hemaview.anatomy` adds what only this model
needs: how its maps are decoded into landmarks (inference.anatomy.decode.DecodeParams). A
file without that key is not an anatomy model and is refused as one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from inference.anatomy.decode import DecodeParams
from inference.contract import PREFIX, ModelContract
from inference.errors import ModelContractError

KEY_ANATOMY = PREFIX + "anatomy"
ANATOMY_MODEL_NAME = "hemaview-anatomy"
DISC_OUTPUT = "disc_probability"
FOVEA_OUTPUT = "fovea_distribution"
CLASS_NAMES = ("optic_disc", "fovea")


@dataclass(frozen=True)
class AnatomyContract(ModelContract):
    decode: DecodeParams = field(default_factory=DecodeParams)

    @property
    def disc_output(self) -> str:
        return self.output_name

    @property
    def fovea_output(self) -> str:
        return self.extra_outputs[0]

    def to_metadata(self) -> dict[str, str]:
        meta = super().to_metadata()
        meta[KEY_ANATOMY] = json.dumps({"decode": json.loads(self.decode.to_json())})
        return meta

    @classmethod
    def from_model(
        cls, contract: ModelContract, meta: dict[str, str], *, source: str = "the model"
    ) -> AnatomyContract:
        """The anatomy contract of a file whose base contract was already checked."""
        raw = meta.get(KEY_ANATOMY)
        if not raw:
            raise ModelContractError(
                f"{source} is not an anatomy model (its contract has no {KEY_ANATOMY} entry; "
                f"it is {contract.model_name!r})"
            )
        if len(contract.extra_outputs) != 1:
            raise ModelContractError(
                f"{source}: an anatomy model has two outputs (disc, fovea); its contract names "
                f"{[contract.output_name, *contract.extra_outputs]}"
            )
        try:
            parsed: Any = json.loads(raw)
            decode = DecodeParams.from_json(json.dumps(parsed["decode"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelContractError(f"{source}: malformed {KEY_ANATOMY} entry ({exc})") from None
        values = {f: getattr(contract, f) for f in contract.__dataclass_fields__}
        return cls(**values, decode=decode)
