"""A saliency map over its scan as a PNG: sagittal, coronal and axial slices through the map's peak.

Both volumes are turned to the closest RAS voxel order first (a permutation and flips, no resampling), so
the panels look the same whatever the scan's stored orientation: patient right on the left of the axial
and coronal panels (radiological convention), superior at the top; pixels keep their aspect in mm.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from fusion.plots import plt

#: map values below this share of the peak's magnitude are not drawn over the scan
SHOW_ABOVE = 0.2


#: voxels within this share of the largest |saliency| tie for the peak (occlusion maps have plateaus)
PEAK_TIE = 1e-4


def saliency_peak(saliency: np.ndarray) -> tuple[int, int, int]:
    """Voxel index of the largest |saliency|; on a plateau of ties, the tied voxel nearest the plateau's
    centroid (not the first in storage order, which would depend on the grid's orientation)."""
    magnitude = np.abs(saliency)
    tied = np.argwhere(magnitude >= magnitude.max() * (1.0 - PEAK_TIE))
    nearest = tied[np.argmin(((tied - tied.mean(axis=0)) ** 2).sum(axis=1))]
    i, j, k = (int(v) for v in nearest)
    return i, j, k


def saliency_png(scan: np.ndarray, saliency: np.ndarray, affine: np.ndarray, title: str, path: Path) -> Path:
    """Write three orthogonal slices through the peak: the scan in grey, the map (red +, blue -) on top."""
    orientation = nib.orientations.io_orientation(affine)
    image = nib.orientations.apply_orientation(scan, orientation)
    values = nib.orientations.apply_orientation(saliency, orientation)
    spacing = np.sqrt((np.asarray(affine, float)[:3, :3] ** 2).sum(axis=0))[orientation[:, 0].astype(int)]
    peak = saliency_peak(values)
    scale = float(np.abs(values).max()) or 1.0
    shown = np.ma.masked_where(np.abs(values) < SHOW_ABOVE * scale, values)
    panels = [("sagittal", 0, 1, 2), ("coronal", 1, 0, 2), ("axial", 2, 0, 1)]  # fixed, across, up axes
    low, high = np.percentile(image, [1.0, 99.0])  # grey levels: HU of bone or air would wash out tissue
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    for ax, (label, fixed, across, up) in zip(axes, panels, strict=True):
        index = tuple(peak[a] if a == fixed else slice(None) for a in range(3))
        aspect = spacing[up] / spacing[across]
        flip = across == 0  # patient right on the viewer's left
        plane, overlay = image[index].T, shown[index].T
        if flip:
            plane, overlay = plane[:, ::-1], overlay[:, ::-1]
        ax.imshow(
            plane, cmap="gray", vmin=low, vmax=high, origin="lower", aspect=aspect, interpolation="nearest"
        )
        ax.imshow(overlay, cmap="RdBu_r", vmin=-scale, vmax=scale, alpha=0.6, origin="lower", aspect=aspect)
        ax.set_title(f"{label}, slice {peak[fixed]}")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
