"""FusionModel: encoders -> fuser -> heads, a plain `nn.Module` (no Lightning, Hydra or files).

Batch contract (built by `fusion.data.collate`):
    inputs = {modality: {"present": (B,) bool, "data": collated items of the present rows only}}
Each encoder runs on the present rows only (no compute is spent on absent inputs), and its
output is scattered back into a zero-filled (B, n_tokens, d) tensor that the fuser masks out.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from fusion.errors import ConfigError
from fusion.fusers.base import as_tokens
from fusion.heads.base import Head

#: what `FusionModel.forward` can predict from (`output`)
OUTPUTS = ("fused", "ensemble")


class FusionModel(nn.Module):
    """Args:
    encoders: modality name -> encoder.
    out_dims: modality name -> feature size of its encoder's output (`Modality.out_dim`).
    fuser: maps {name: (tokens, present)} to (B, d) — see `fusion.fusers.base`.
    heads: the prediction heads (a list, or name -> head).
    output: what `forward` predicts: ``fused`` (the fused pass) or ``ensemble`` (`ensemble_outputs`: the mean
        of the fused pass and each present modality's one-modality pass; a one-modality model is unchanged).
    """

    def __init__(
        self,
        encoders: dict[str, nn.Module],
        out_dims: dict[str, int],
        fuser: nn.Module,
        heads: dict[str, Head] | list[Head],
        output: str = "fused",
    ):
        super().__init__()
        if output not in OUTPUTS:
            raise ConfigError(f"model.output must be one of {list(OUTPUTS)}, got {output!r}")
        self.output = output
        if set(encoders) != set(out_dims):
            raise ValueError(
                f"encoders {sorted(encoders)} and out_dims {sorted(out_dims)} name different modalities"
            )
        self.out_dims = dict(out_dims)
        if isinstance(heads, list | tuple):
            heads = {h.name: h for h in heads}
        if not heads:
            raise ValueError("FusionModel needs at least one head")
        self.encoders = nn.ModuleDict(encoders)
        self.fuser = fuser
        self.heads = nn.ModuleDict(heads)

    def encode(self, inputs: dict[str, dict[str, Any]]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Run each encoder on its present rows; return name -> (tokens (B, T, d), present (B,))."""
        encoded = {}
        for name, encoder in self.encoders.items():
            present = inputs[name]["present"]
            batch = present.shape[0]
            if present.any():
                tokens = as_tokens(encoder(inputs[name]["data"]))
                full = tokens.new_zeros((batch, *tokens.shape[1:]))
                full[present] = tokens
            else:  # nobody in this batch has it: one zero token, fully masked by the fuser
                full = torch.zeros(batch, 1, self.out_dims[name], device=present.device)
            encoded[name] = (full, present)
        return encoded

    def embed(self, inputs: dict[str, dict[str, Any]]) -> torch.Tensor:
        """The fused patient embedding (B, d)."""
        return self.fuser(self.encode(inputs))

    def forward(self, inputs: dict[str, dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.outputs_from_encoded(self.encode(inputs))

    def outputs_from_encoded(
        self, encoded: dict[str, tuple[torch.Tensor, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """What `forward` predicts, from `encode`'s output: the fuser and heads only (``output`` honoured).

        Explanations call it once per coalition of modalities (each with its ``present`` flags cleared for
        the modalities left out), so the encoders run once per patient.
        """
        if self.output == "ensemble" and len(self.encoders) > 1:
            return ensemble_outputs(*self.fused_and_unimodal(encoded))
        z = self.fuser(encoded)
        return {name: head(z) for name, head in self.heads.items()}

    def forward_with_unimodal(
        self, inputs: dict[str, dict[str, Any]]
    ) -> tuple[dict[str, torch.Tensor], dict[str, tuple[torch.Tensor, dict[str, torch.Tensor]]]]:
        """The fused outputs, and for each modality the outputs of the same fuser and heads given that
        modality alone: name -> (rows (B,) bool: the patients who have it, head outputs for those rows).

        The encoders run once; each one-modality pass re-runs only the fuser and heads on the rows that
        have the modality, every other modality marked absent (as a missing file would be). Every
        modality gets an entry, with zero rows when nobody in the batch has it, so data-parallel ranks
        gather the same tensors in the same order.
        """
        return self.fused_and_unimodal(self.encode(inputs))

    def fused_and_unimodal(
        self, encoded: dict[str, tuple[torch.Tensor, torch.Tensor]], only: str | None = None
    ) -> tuple[dict[str, torch.Tensor], dict[str, tuple[torch.Tensor, dict[str, torch.Tensor]]]]:
        """`forward_with_unimodal` from `encode`'s output; `only`: the one-modality pass of that modality
        alone (explanations vary one modality's input and keep the others' passes)."""
        z = self.fuser(encoded)
        fused = {name: head(z) for name, head in self.heads.items()}
        unimodal = {}
        for name, (_, rows) in encoded.items():
            if only is not None and name != only:
                continue
            if rows.any():
                alone = {n: (t[rows], p[rows] & (n == name)) for n, (t, p) in encoded.items()}
                z_alone = self.fuser(alone)
            else:
                z_alone = z.new_zeros(0, z.shape[1])
            unimodal[name] = (rows, {h: head(z_alone) for h, head in self.heads.items()})
        return fused, unimodal


def ensemble_outputs(
    fused: dict[str, torch.Tensor], unimodal: dict[str, tuple[torch.Tensor, dict[str, torch.Tensor]]]
) -> dict[str, torch.Tensor]:
    """Per patient and head, the mean of the fused output and the one-modality outputs of the modalities the
    patient has (`FusionModel.forward_with_unimodal`): 1 + n_present members, each weighted equally.

    Every head's output is a logit or a log-hazard, so the mean is taken on that scale. Why: on the demo
    cohort the one-modality passes of a model trained with the auxiliary loss generalised better than its
    fused pass (README, "Prediction"); members that each had to predict alone cannot co-adapt across
    modalities, which a small cohort punishes.
    """
    # (B,), the same for every head; a tensor, as `unimodal` holds every modality of the model (typeshed's
    # sum() adds the int 0 of an empty sum)
    members = 1 + cast(torch.Tensor, sum(rows.long() for rows, _ in unimodal.values()))
    out = {}
    for head, value in fused.items():
        total = value
        for rows, outputs in unimodal.values():
            total = total.index_add(0, rows.nonzero().flatten(), outputs[head].to(total.dtype))
        out[head] = total / members.to(total.dtype).view(-1, *([1] * (value.dim() - 1)))
    return out
