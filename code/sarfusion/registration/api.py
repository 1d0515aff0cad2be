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
                   aligned_sar_path: str | Path | None = None,
                   confidence_path: str | Path | None = None) -> dict:
    """Register one optical / SAR pair and write the SPEC offset map to ``out_path``.

    ``mode``: ``dense`` (local matching, the default; training-free, or with the learned
    descriptors when ``weights_dir`` holds ``descriptors.pt``), ``baseline`` (keypoint U-Nets
    + RANSAC affine; needs ``weights_dir``) or ``none`` (zero offsets). ``config``: a
    :class:`~sarfusion.registration.dense.DenseConfig` for the dense mode.
    ``aligned_sar_path``: also write the SAR resampled through the offsets onto the optical grid
    (:func:`~sarfusion.registration.aligned.write_aligned_sar`). ``confidence_path``: also write
    the per-pixel confidence in [0, 1] (how much local matching evidence backs the offset rather
    than a fallback; :func:`~sarfusion.registration.field.node_confidence`, scaled by the
    do-no-harm gate) as a 1-band GeoTIFF.
    Returns ``{"offsets": path, "mode", "seconds", "stats", "confidence", "kept"}`` (+
    ``"aligned_sar"``, ``"confidence_map"``): ``confidence`` the mean confidence over the field
    (0 for ``none``, None for ``baseline``), ``kept`` the fraction of the finest level's nodes
    whose matches were kept (dense mode; else None).
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
    out = write_offsets(grid, field, out_path, confidence_path=confidence_path)
    result = {"offsets": str(out), "mode": mode, "stats": stats, **field_summary(field, stats)}
    if confidence_path is not None:
        result["confidence_map"] = str(confidence_path)
    if aligned_sar_path is not None:
        from sarfusion.registration.aligned import write_aligned_sar
        result["aligned_sar"] = write_aligned_sar(optical_path, sar_path, out, aligned_sar_path)["aligned_sar"]
    if preview_dir is not None:
        from sarfusion.registration.previews import (write_aligned_preview, write_confidence_preview,
                                                     write_previews)
        write_previews(grid, out, preview_dir, Path(optical_path).stem)
        if aligned_sar_path is not None:
            write_aligned_preview(optical_path, aligned_sar_path, preview_dir, Path(optical_path).stem)
        if confidence_path is not None:
            write_confidence_preview(optical_path, confidence_path, preview_dir, Path(optical_path).stem)
    return {**result, "seconds": round(time.time() - t0, 2)}


def field_summary(field, stats) -> dict:
    """``confidence`` (mean node confidence of a dense field; 0 for zero offsets; None when the
    field carries none) and ``kept`` (kept / matched-lattice nodes of the last dense level)."""
    conf = getattr(field, "confidence", None)
    confidence = 0.0 if isinstance(field, ZeroField) else (None if conf is None else round(float(conf.mean()), 4))
    levels = [st for st in stats if isinstance(st, dict) and "kept" in st] if isinstance(stats, list) else []
    kept = round(levels[-1]["kept"] / max(1, levels[-1]["nodes"]), 4) if levels else None
    return {"confidence": confidence, "kept": kept}


def register_pair(optical_path: str | Path, sar_path: str | Path, out_path: str | Path,
                  mode: str = "dense", weights_dir: str | Path | None = None,
                  preview_dir: str | Path | None = None) -> Path:
    """:func:`register_scene` returning only the offset map path."""
    return Path(register_scene(optical_path, sar_path, out_path, mode, weights_dir, preview_dir)["offsets"])
