"""Train-time volume augmentation of a whole collated batch (n, C, D, H, W), on the batch's device.

Why: MONAI's array transforms run one volume at a time, with a float64 numpy noise draw, a fresh
sampling grid and Python overhead per call: 4-8 ms of CPU per 64^3 scan (1-3 channels), ~75% of
what a DataLoader worker spent per sample (`benchmarks/sample_cost.py`), so a GPU waited for data.
Here the same random transforms run vectorised over the batch, after it was moved to the training
device (``data.augment_on``; see `fusion.data.datamodule`).

Each MONAI transform of the configured list is matched to a batched twin that draws the same
distributions per sample (from torch's RNG on the batch's device, so seeded runs repeat):

- `RandFlip(prob, spatial_axis)`: the given spatial axes (all for None) flipped with probability prob;
- `RandAffine(prob, rotate_range, translate_range, scale_range, mode, padding_mode)`: MONAI's
  geometry -- rotation about the (intrinsic) X, Y, Z axes by U(range) radians, translation in voxels,
  scale 1 + U(range), about the volume centre, bilinear/nearest, align_corners=False;
- `RandScaleIntensity(factors, prob)`: x * (1 + U(factors)) per sample;
- `RandGaussianNoise(prob, mean, std)`: x + N(mean, s), s ~ U(0, std) (or std with sample_std=False).

Steps overwrite the chosen samples of the batch in place. Any other transform, or a setting the
twin does not cover (shear, spatial_size, spline modes, channel-wise factors), runs per sample
(`PerSample`) with MONAI on the same device: slower, but what was configured. Random streams differ
from the per-sample CPU path, so numbers differ from a ``cpu`` run with the same seed; distributions
do not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.transforms import RandAffine, RandFlip, RandGaussianNoise, RandScaleIntensity
from monai.transforms.transform import Randomizable

Step = Callable[[torch.Tensor], torch.Tensor]


def _chosen(x: torch.Tensor, prob: float) -> torch.Tensor:
    """Indices of the rows (samples) a transform with probability `prob` applies to."""
    return (torch.rand(x.shape[0], device=x.device) < prob).nonzero().flatten()


def _uniform(n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    return torch.rand(n, device=device, dtype=torch.float64) * (high - low) + low


class BatchFlip:
    """`RandFlip`: each sample's `axes` (spatial, 0-based) flipped with probability `prob`."""

    def __init__(self, prob: float, axes: Sequence[int]):
        self.prob, self.dims = float(prob), [2 + int(a) for a in axes]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        rows = _chosen(x, self.prob)
        if rows.numel() == 0:
            return x
        x[rows] = x[rows].flip(self.dims)
        return x


class BatchScaleIntensity:
    """`RandScaleIntensity`: x * (1 + f), f ~ U(low, high), one f per chosen sample."""

    def __init__(self, prob: float, low: float, high: float):
        self.prob, self.low, self.high = float(prob), float(low), float(high)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        rows = _chosen(x, self.prob)
        if rows.numel() == 0:
            return x
        factor = 1.0 + _uniform(rows.numel(), self.low, self.high, x.device).to(x.dtype)
        x[rows] = x[rows] * factor.view(-1, *[1] * (x.dim() - 1))
        return x


class BatchGaussianNoise:
    """`RandGaussianNoise`: x + N(mean, s) per chosen sample, s ~ U(0, std) (or std)."""

    def __init__(self, prob: float, mean: float, std: float, sample_std: bool):
        self.prob, self.mean, self.std, self.sample_std = float(prob), float(mean), float(std), sample_std

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        rows = _chosen(x, self.prob)
        if rows.numel() == 0:
            return x
        n = rows.numel()
        std = _uniform(n, 0.0, self.std, x.device) if self.sample_std else torch.full((n,), self.std)
        std = std.to(device=x.device, dtype=x.dtype).view(-1, *[1] * (x.dim() - 1))
        chosen = x[rows]
        x[rows] = chosen + (torch.randn_like(chosen) * std + self.mean)
        return x


def _ranges(values: Sequence[Any]) -> list[tuple[float, float]]:
    """MONAI's per-axis ranges: (low, high) pairs, a scalar r meaning (-r, r), None entries skipped."""
    out = []
    for value in values:
        if value is None:
            continue
        if isinstance(value, Sequence):
            out.append((float(value[0]), float(value[1])))
        else:
            out.append((-float(value), float(value)))
    return out


def _rotation(angles: torch.Tensor) -> torch.Tensor:
    """(n, k<=3) angles -> (n, 3, 3): MONAI's intrinsic X, then Y, then Z rotation (`create_rotate`)."""
    n = angles.shape[0]
    out = torch.eye(3, dtype=angles.dtype, device=angles.device).expand(n, 3, 3)
    for axis in range(angles.shape[1]):
        c, s = torch.cos(angles[:, axis]), torch.sin(angles[:, axis])
        r = torch.eye(3, dtype=angles.dtype, device=angles.device).repeat(n, 1, 1)
        i, j = [(1, 2), (0, 2), (0, 1)][axis]
        sign = -1.0 if axis == 1 else 1.0  # y: [[c, s], [-s, c]] in (0, 2); x and z: [[c, -s], [s, c]]
        r[:, i, i], r[:, j, j] = c, c
        r[:, i, j], r[:, j, i] = -sign * s, sign * s
        out = out @ r
    return out


class BatchAffine:
    """`RandAffine` without shear: rotate, translate (voxels) and scale about the volume centre."""

    def __init__(self, prob: float, rotate, translate, scale, mode: str, padding_mode: str):  # noqa: ANN001
        self.prob = float(prob)
        self.rotate, self.translate, self.scale = _ranges(rotate), _ranges(translate), _ranges(scale)
        self.mode, self.padding_mode = mode, padding_mode

    def _draw(self, ranges: list[tuple[float, float]], n: int, device: torch.device) -> torch.Tensor:
        cols = [_uniform(n, low, high, device) for low, high in ranges[:3]]
        return torch.stack(cols, dim=1) if cols else torch.zeros(n, 0, dtype=torch.float64, device=device)

    def matrices(self, n: int, device: torch.device) -> torch.Tensor:
        """(n, 4, 4) voxel-space affines (spatial axes 0, 1, 2), output point -> input point."""
        affine = torch.eye(4, dtype=torch.float64, device=device).repeat(n, 1, 1)
        affine[:, :3, :3] = _rotation(self._draw(self.rotate, n, device))
        shift = self._draw(self.translate, n, device)
        scale = 1.0 + self._draw(self.scale, n, device)
        full_scale = torch.ones(n, 3, dtype=torch.float64, device=device)
        full_scale[:, : scale.shape[1]] = scale
        # R @ T @ S, as MONAI's AffineGrid composes them (no shear)
        affine[:, :3, 3] = (affine[:, :3, : shift.shape[1]] @ shift.unsqueeze(-1)).squeeze(-1)
        affine[:, :3, :3] = affine[:, :3, :3] * full_scale.unsqueeze(1)
        return affine

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        rows = _chosen(x, self.prob)
        if rows.numel() == 0:
            return x
        x[rows] = self.apply(x[rows], self.matrices(rows.numel(), x.device))
        return x

    def apply(self, x: torch.Tensor, affine: torch.Tensor) -> torch.Tensor:
        """Resample `x` (n, C, D, H, W) through voxel affines (n, 4, 4), as MONAI's `Resample` does."""
        sizes = torch.tensor(x.shape[2:], dtype=torch.float64, device=x.device)
        norm = torch.diag_embed(torch.cat([2.0 / sizes, sizes.new_ones(1)]))
        inverse = torch.diag_embed(torch.cat([sizes / 2.0, sizes.new_ones(1)]))
        theta = norm @ affine @ inverse  # normalised (align_corners=False) coordinates, axes (D, H, W)
        order = [2, 1, 0]  # grid_sample's coordinates are (W, H, D)
        theta = theta[:, order][:, :, order + [3]].to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode=self.mode, padding_mode=self.padding_mode, align_corners=False)


def seeded_call(transform: Callable, item: torch.Tensor) -> torch.Tensor:
    """`transform(item)` as a plain tensor, a random transform seeded from torch's RNG first.

    Seeding MONAI's own RNGs from torch's, which Lightning seeds and DataLoader varies per worker, makes
    runs reproducible and keeps workers from repeating each other's augmentations.
    """
    if isinstance(transform, Randomizable):
        transform.set_random_state(seed=int(torch.randint(0, 2**31 - 1, ()).item()))
    out = transform(item)
    return out.as_tensor() if isinstance(out, MetaTensor) else torch.as_tensor(out)


class PerSample:
    """Any transform, one sample at a time on the batch's device, seeded from torch (the fallback)."""

    def __init__(self, transform: Callable):
        self.transform = transform

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        rows = [seeded_call(self.transform, row).to(device=x.device, dtype=x.dtype) for row in x]
        return torch.stack(rows)


def batch_step(transform: Callable) -> Step:
    """The batched twin of a MONAI transform where one covers its settings, else `PerSample`."""
    if type(transform) is RandFlip:
        axes = transform.flipper.spatial_axis
        axes = [0, 1, 2] if axes is None else [axes] if isinstance(axes, int) else list(axes)
        return BatchFlip(transform.prob, axes)
    if type(transform) is RandScaleIntensity and not transform.channel_wise:
        return BatchScaleIntensity(transform.prob, *transform.factors)
    if type(transform) is RandGaussianNoise:
        return BatchGaussianNoise(transform.prob, transform.mean, transform.std, bool(transform.sample_std))
    if type(transform) is RandAffine:
        grid = transform.rand_affine_grid
        plain_modes = transform.mode in ("bilinear", "nearest") and transform.padding_mode in (
            "zeros",
            "border",
            "reflection",
        )
        if plain_modes and transform.spatial_size is None and not _ranges(grid.shear_range):
            return BatchAffine(
                transform.prob,
                grid.rotate_range,
                grid.translate_range,
                grid.scale_range,
                cast(str, transform.mode),  # MONAI types it str | int (spline order); plain_modes: a str
                transform.padding_mode,
            )
    return PerSample(transform)


class BatchAugment:
    """The configured augmentation list as batched steps, applied in order to (n, C, D, H, W).

    Overwrites the batch in place (a freshly collated batch, so no copy of it is needed: on a CPU the
    copies would cost more than the transforms) and returns it.
    """

    def __init__(self, transforms: Sequence[Callable]):
        self.steps = [batch_step(t) for t in transforms]

    @property
    def fallbacks(self) -> list[str]:
        """Names of the transforms that run per sample (no batched twin for their settings)."""
        return [type(s.transform).__name__ for s in self.steps if isinstance(s, PerSample)]

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f"batch augmentation expects (n, C, D, H, W), got shape {tuple(x.shape)}")
        if x.shape[0] == 0:
            return x
        for step in self.steps:
            x = step(x)
        return x
