"""Registration entry points for the CLI and the pipeline: one pair in, one offset GeoTIFF out."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from sarfusion.errors import InputError
from sarfusion.registration.align import scene_grid
from sarfusion.registration.field import ZeroField, write_offsets

log = logging.getLogger(__name__)
MODES = ("dense", "baseline", "none")


def register_scene(optical_path: str | Path, sar_path: str | Path, out_path: str | Path,
                   mode: str = "dense", weights_dir: str | Path | None = None,
                   preview_dir: str | Path | None = None, config=None,
                   aligned_sar_path: str | Path | None = None) -> dict:
    """Register one optical / SAR pair and write the SPEC offset map to ``out_path``.

    ``mode``: ``dense`` (local matching, the default; training-free, or with the learned
    descriptors when ``weights_dir`` holds ``descriptors.pt``), ``baseline`` (keypoint U-Nets
    + RANSAC affine; needs ``weights_dir``) or ``none`` (zero offsets). ``config``: a
    :class:`~sarfusion.registration.dense.DenseConfig` for the dense mode.
    ``aligned_sar_path``: also write the SAR resampled through the offsets onto the optical grid
    (:func:`~sarfusion.registration.aligned.write_aligned_sar`).
    Returns ``{"offsets": path, "mode", "seconds", "stats"}`` (+ ``"aligned_sar"``).
    """
    if mode not in MODES:
        raise InputError(f"unknown registration mode {mode!r}; choose one of: {', '.join(MODES)}")
    t0 = time.time()
    grid = scene_grid(optical_path, sar_path)
    log.info("registration grid: %dx%d px of %.3g %s%s", grid.width, grid.height, grid.res,
             "m" if grid.crs_wkt else "px", " (SAR reprojected)" if grid.reprojected else "")
    stats: dict | list = {}
    if mode == "none":
        field = ZeroField()
    elif mode == "baseline":
        if weights_dir is None:
            raise InputError("--mode baseline needs --weights (train with 'sarfusion register-train')")
        from sarfusion.registration.keypoints import keypoint_affine
        field, stats = keypoint_affine(grid, weights_dir)
    else:
        from sarfusion.engine import select_device
        from sarfusion.registration.dense import dense_field
        from sarfusion.registration.descriptors import load_descriptors
        device = select_device(config.device if config is not None else None)
        field, stats = dense_field(grid, config, descriptors=load_descriptors(weights_dir, device))
    out = write_offsets(grid, field, out_path)
    result = {"offsets": str(out), "mode": mode, "stats": stats}
    if aligned_sar_path is not None:
        from sarfusion.registration.aligned import write_aligned_sar
        result["aligned_sar"] = write_aligned_sar(optical_path, sar_path, out, aligned_sar_path)["aligned_sar"]
    if preview_dir is not None:
        from sarfusion.registration.previews import write_aligned_preview, write_previews
        write_previews(grid, out, preview_dir, Path(optical_path).stem)
        if aligned_sar_path is not None:
            write_aligned_preview(optical_path, aligned_sar_path, preview_dir, Path(optical_path).stem)
    return {**result, "seconds": round(time.time() - t0, 2)}


def register_pair(optical_path: str | Path, sar_path: str | Path, out_path: str | Path,
                  mode: str = "dense", weights_dir: str | Path | None = None,
                  preview_dir: str | Path | None = None) -> Path:
    """:func:`register_scene` returning only the offset map path."""
    return Path(register_scene(optical_path, sar_path, out_path, mode, weights_dir, preview_dir)["offsets"])
