"""A saliency map over its scan as a PNG: sagittal, coronal and axial slices through the map's peak.

Both volumes are turned to the closest RAS voxel order first (a permutation and flips, no resampling), so
the panels look the same whatever the scan's stored orientation: patient right on the left of the axial
and coronal panels (radiological convention), superior at the top; pixels keep their aspect in mm.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image, ImageDraw

from fusion.attribution.png_canvas import (
    FONT_SIZE,
    MARGIN,
    colour_bar,
    coloured,
    font,
    save,
    to_image,
    with_title,
)

#: map values below this share of the peak's magnitude are not drawn over the scan
SHOW_ABOVE = 0.2
#: the map's opacity over the scan
ALPHA = 0.6
#: panel height in pixels
PANEL_PX = 256
#: (name, the axis the slice is fixed on, the axis across, the axis up), in RAS voxel order
PANELS = (("sagittal", 0, 1, 2), ("coronal", 1, 0, 2), ("axial", 2, 0, 1))


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
    low, high = np.percentile(image, [1.0, 99.0])  # grey levels: HU of bone or air would wash out tissue
    panels = []
    for label, fixed, across, up in PANELS:
        index = tuple(peak[a] if a == fixed else slice(None) for a in range(3))
        plane, overlay = image[index].T[::-1], values[index].T[::-1]  # rows: superior (or anterior) first
        if across == 0:  # patient right on the viewer's left
            plane, overlay = plane[:, ::-1], overlay[:, ::-1]
        grey = np.clip((plane - low) / (high - low if high > low else 1.0), 0.0, 1.0)
        rgb = np.repeat(grey[..., None], 3, axis=-1)
        shown = np.abs(overlay) >= SHOW_ABOVE * scale
        rgb[shown] = (1 - ALPHA) * rgb[shown] + ALPHA * coloured(overlay[shown], "RdBu_r", -scale, scale)
        height_mm, width_mm = plane.shape[0] * spacing[up], plane.shape[1] * spacing[across]
        size = (max(1, round(PANEL_PX * width_mm / height_mm)), PANEL_PX)  # pixels keep their aspect in mm
        panels.append((to_image(rgb, size), f"{label}, slice {peak[fixed]}"))
    body = Image.new(
        "RGB", (sum(p.width for p, _ in panels) + MARGIN * 2, PANEL_PX + FONT_SIZE + MARGIN), "white"
    )
    draw, x = ImageDraw.Draw(body), 0
    for panel, caption in panels:
        draw.text((x, 0), caption, fill="black", font=font())
        body.paste(panel, (x, FONT_SIZE + MARGIN))
        x += panel.width + MARGIN
    return save(with_title(body, title, colour_bar(PANEL_PX, "RdBu_r", -scale, scale)), path)
