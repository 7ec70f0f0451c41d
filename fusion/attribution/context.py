"""`PatientContext`: one patient's encoded inputs and the scalars an explanation attributes.

Every explainer (modality Shapley values, table Integrated Gradients, tile and imaging maps) works
on one patient at a time through this object. The encoders run once per patient (`encoded`); an
explainer that varies one modality's input re-encodes that modality only (`targets_from_data`) or
substitutes its tokens (`targets_with`) and re-runs the fuser and heads, so the other modalities
cost nothing more. Outputs honour the model's ``output`` setting (fused pass or ensemble), exactly
as `FusionModel.forward` predicts.

A *target* is one scalar of one head (`Head.explain_targets`): ``(head, target)`` keys, e.g.
``("grade", "grade_prob_3")``, ``("survival", "survival_log_hazard")``, ``("response", "response_logit")``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from fusion.fusers.base import as_tokens
from fusion.heads.base import Head
from fusion.model import FusionModel, ensemble_outputs

#: (head name, target name)
TargetKey = tuple[str, str]
#: modality name -> (tokens (B, T, d), present (B,) bool), as `FusionModel.encode` returns it
Encoded = dict[str, tuple[Tensor, Tensor]]


def target_values(heads: dict[str, Head], outputs: dict[str, Tensor]) -> dict[TargetKey, Tensor]:
    """(head, target) -> (B,) for every head in `heads`, from the model's head outputs."""
    return {
        (name, target): value
        for name, head in heads.items()
        for target, value in head.explain_targets(outputs[name]).items()
    }


@dataclass
class PatientContext:
    """One patient, ready to explain.

    patient_id: the manifest id.
    model: the trained model, in eval mode.
    heads: the heads to explain (a subset of the model's: ``heads=[...]``).
    inputs: this patient's model inputs, a batch of one (`FusionModel.forward`'s contract).
    refs: modality -> what this patient's item was loaded from (`Modality.gather`: a path, an
        `ImagingRef`, a table row), None when the patient lacks it. For maps drawn back onto files.
    encoded: `model.encode(inputs)`, computed without gradients.
    """

    patient_id: str
    model: FusionModel
    heads: dict[str, Head]
    inputs: dict[str, dict[str, Any]]
    refs: dict[str, Any] = field(default_factory=dict)
    encoded: Encoded = field(default_factory=dict)
    _alone_cache: dict[str, dict[str, Tensor]] = field(default_factory=dict, repr=False)
    _prediction: dict[TargetKey, float] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.encoded:
            with torch.no_grad():
                self.encoded = self.model.encode(self.inputs)

    @property
    def present(self) -> list[str]:
        """The modalities this patient has, in the model's order."""
        return [name for name, (_, present) in self.encoded.items() if bool(present[0])]

    @property
    def target_keys(self) -> list[TargetKey]:
        """Every (head, target) explained, in head order."""
        return list(self.prediction())

    def targets(self, encoded: Encoded) -> dict[TargetKey, Tensor]:
        """(head, target) -> (S,) for a batch of S variants of this patient (any `Encoded` of batch S)."""
        return target_values(self.heads, self.model.outputs_from_encoded(encoded))

    def prediction(self) -> dict[TargetKey, float]:
        """The patient's own prediction of every target (all present modalities); one model pass, kept."""
        if not self._prediction:
            with torch.no_grad():
                self._prediction = {key: float(value[0]) for key, value in self.targets(self.encoded).items()}
        return dict(self._prediction)

    def with_present(self, keep: Tensor) -> Encoded:
        """S coalitions of this patient: `keep` (S, M) bool over the model's modalities (`encoded` order);
        a modality is present in row s when the patient has it and ``keep[s, m]``."""
        rows = keep.shape[0]
        out = {}
        for m, (name, (tokens, present)) in enumerate(self.encoded.items()):
            out[name] = (
                tokens.expand(rows, *tokens.shape[1:]),
                present.expand(rows) & keep[:, m].to(present.device),
            )
        return out

    def targets_with(self, name: str, tokens: Tensor) -> dict[TargetKey, Tensor]:
        """The targets when modality `name`'s tokens are replaced by `tokens` (S, T, d) or (S, d), the
        patient's other modalities unchanged: S variants in one fuser pass. Differentiable in `tokens`."""
        tokens = as_tokens(tokens)
        rows = tokens.shape[0]
        encoded: Encoded = {}
        for other, (t, present) in self.encoded.items():
            if other == name:
                encoded[other] = (tokens, torch.ones(rows, dtype=torch.bool, device=tokens.device))
            else:
                encoded[other] = (t.expand(rows, *t.shape[1:]), present.expand(rows))
        if self.model.output != "ensemble" or len(self.model.encoders) == 1:
            return self.targets(encoded)
        # the ensemble's one-modality passes of the other modalities do not change with `name`'s tokens:
        # computed once per patient (`_alone`), not once per variant (3x faster on the quickstart model)
        fused, varied = self.model.fused_and_unimodal(encoded, only=name)
        ones = torch.ones(rows, dtype=torch.bool, device=tokens.device)
        unimodal = {name: varied[name]}
        for other in self.present:
            if other != name:
                unimodal[other] = (
                    ones,
                    {h: v.expand(rows, *v.shape[1:]) for h, v in self._alone(other).items()},
                )
        return target_values(self.heads, ensemble_outputs(fused, unimodal))

    def _alone(self, name: str) -> dict[str, Tensor]:
        """The head outputs (1, ...) of this patient's one-modality pass of `name` (cached, no gradient)."""
        if name not in self._alone_cache:
            with torch.no_grad():
                _, unimodal = self.model.fused_and_unimodal(self.encoded, only=name)
            self._alone_cache[name] = unimodal[name][1]
        return self._alone_cache[name]

    def targets_from_data(self, name: str, data: Any) -> dict[TargetKey, Tensor]:
        """The targets when modality `name`'s collated input is `data` (S rows, as its `collate` makes them,
        e.g. interpolated gene vectors or occluded volumes): its encoder runs on `data`, then
        `targets_with`. Differentiable in `data`."""
        return self.targets_with(name, self.model.encoders[name](data))
