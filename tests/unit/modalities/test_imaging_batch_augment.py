"""Batched on-device volume augmentation: MONAI's geometry, per-sample draws, seeding, fallbacks."""

from __future__ import annotations

import pytest
import torch
from monai.transforms import Affine, RandAffine, RandFlip, RandGaussianNoise, RandRotate90, RandScaleIntensity

from fusion.modalities.imaging import ImagingModality
from fusion.modalities.imaging_batch_augment import (
    BatchAffine,
    BatchAugment,
    BatchFlip,
    BatchGaussianNoise,
    BatchScaleIntensity,
    PerSample,
    batch_step,
)
from fusion.modalities.imaging_transforms import augmentation


def _volumes(n: int = 6, shape: tuple[int, ...] = (2, 10, 12, 14)) -> torch.Tensor:
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(
    ("rotate", "translate", "scale"),
    [
        ((0.3, -0.2, 0.1), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
        ((0.1, 0.2, -0.3), (1.5, -2.0, 0.5), (1.1, 0.9, 1.2)),
    ],
)
def test_affine_resamples_as_monai_affine(rotate: tuple, translate: tuple, scale: tuple) -> None:
    x = _volumes(1)
    expected = Affine(
        rotate_params=rotate,
        translate_params=translate,
        scale_params=scale,
        padding_mode="zeros",
        mode="bilinear",
        image_only=True,
    )(x[0])
    step = BatchAffine(1.0, [], [], [], "bilinear", "zeros")
    affine = _monai_matrix(rotate, translate, scale)
    got = step.apply(x, affine.unsqueeze(0))[0]  # grid_sample path vs MONAI's Resample
    torch.testing.assert_close(got, torch.as_tensor(expected), atol=1e-4, rtol=0)


def _monai_matrix(rotate: tuple, translate: tuple, scale: tuple) -> torch.Tensor:
    from monai.transforms.utils import create_rotate, create_scale, create_translate

    return torch.as_tensor(
        create_rotate(3, rotate) @ create_translate(3, translate) @ create_scale(3, scale),
        dtype=torch.float64,
    )


def test_drawn_affines_follow_monai_composition() -> None:
    step = BatchAffine(1.0, [0.2, 0.2, 0.2], [(1.0, 2.0)], [0.1, 0.1, 0.1], "bilinear", "zeros")
    torch.manual_seed(0)
    matrices = step.matrices(50, torch.device("cpu"))
    rotation_scale = matrices[:, :3, :3]
    scales = rotation_scale.norm(dim=1)  # R @ diag(s): column norms are the scale factors
    assert ((scales > 0.9 - 1e-6) & (scales < 1.1 + 1e-6)).all()
    shift = torch.linalg.solve(rotation_scale / scales.unsqueeze(1), matrices[:, :3, 3:]).squeeze(-1)
    assert ((shift[:, 0] >= 1.0 - 1e-6) & (shift[:, 0] <= 2.0 + 1e-6)).all()  # translate axis 0 only
    assert shift[:, 1:].abs().max() < 1e-6
    assert len({round(float(s), 6) for s in scales[:, 0]}) == 50  # one draw per sample


def test_steps_keep_shape_dtype_and_change_only_chosen_samples() -> None:
    x = _volumes()
    torch.manual_seed(0)
    for step in (
        BatchFlip(0.5, [0]),
        BatchAffine(0.5, [0.1] * 3, [], [0.1] * 3, "bilinear", "zeros"),
        BatchScaleIntensity(0.5, -0.1, 0.1),
        BatchGaussianNoise(0.5, 0.0, 0.02, True),
    ):
        out = step(x.clone())
        assert out.shape == x.shape and out.dtype == x.dtype
        changed = [not torch.equal(a, b) for a, b in zip(out, x, strict=True)]
        assert 0 < sum(changed) < len(x), type(step).__name__  # p=0.5 over 6 samples, seed 0


def test_each_step_does_what_its_monai_twin_does_at_p1() -> None:
    x = _volumes()
    assert torch.equal(BatchFlip(1.0, [0, 2])(x.clone()), x.flip([2, 4]))
    ratio = BatchScaleIntensity(1.0, -0.1, 0.1)(x.clone()) / x
    per_sample = ratio.flatten(1)
    torch.testing.assert_close(per_sample.amin(1), per_sample.amax(1))  # one factor per sample
    assert ((per_sample[:, 0] >= 0.9) & (per_sample[:, 0] <= 1.1)).all()
    noise = (BatchGaussianNoise(1.0, 0.0, 0.02, False)(x.clone()) - x).flatten(1)
    torch.testing.assert_close(noise.std(1), torch.full((6,), 0.02), atol=2e-3, rtol=0)


def test_p0_is_identity() -> None:
    x = _volumes()
    augment = BatchAugment(
        [
            RandFlip(prob=0.0),
            RandAffine(prob=0.0),
            RandScaleIntensity(0.1, prob=0.0),
            RandGaussianNoise(prob=0.0),
        ]
    )
    assert torch.equal(augment(x.clone()), x)


def test_seeded_runs_repeat_and_seeds_differ() -> None:
    augment = BatchAugment(augmentation().transforms)
    x = _volumes(8)
    torch.manual_seed(3)
    first = augment(x.clone())
    torch.manual_seed(3)
    again = augment(x.clone())
    torch.manual_seed(4)
    other = augment(x.clone())
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_builtin_list_is_fully_batched_and_unknown_settings_fall_back() -> None:
    assert BatchAugment(augmentation().transforms).fallbacks == []
    assert isinstance(batch_step(RandAffine(prob=1.0, shear_range=(0.1,) * 6)), PerSample)
    assert isinstance(batch_step(RandScaleIntensity(0.1, prob=1.0, channel_wise=True)), PerSample)
    assert BatchAugment([RandRotate90(prob=1.0, spatial_axes=(1, 2))]).fallbacks == ["RandRotate90"]


def test_fallback_applies_the_transform_to_every_row() -> None:
    x = _volumes(3, (1, 6, 6, 6))
    out = BatchAugment([RandRotate90(prob=1.0, max_k=1, spatial_axes=(1, 2))])(x.clone())
    assert torch.equal(out, x.rot90(1, dims=(3, 4)))
    doubled = BatchAugment([lambda v: v * 2])(x.clone())  # any callable a user configured
    assert torch.equal(doubled, x * 2)


def test_modality_augment_batch_honours_augment_and_custom_lists() -> None:
    x = _volumes(4, (1, 8, 8, 8))
    off = ImagingModality("ct", augment=False)
    assert off.augment_batch(x) is x
    custom = ImagingModality(
        "ct", spatial_size=(8, 8, 8), augmentations=[{"_target_": "monai.transforms.RandFlip", "prob": 1.0}]
    )
    assert torch.equal(custom.augment_batch(x.clone()), x.flip([2, 3, 4]))  # spatial_axis None: every axis
    with pytest.raises(ValueError, match=r"\(n, C, D, H, W\)"):
        custom.augment_batch(x[0])
