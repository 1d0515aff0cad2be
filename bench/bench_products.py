"""Analyst products at full SN9 size: time and peak memory of writing a 13,000 px offset map as a
Cloud-Optimized GeoTIFF and of the aligned SAR (the SAR resampled through it onto the optical grid).

    .venv/bin/python bench/bench_products.py [--size 13000] [--work DIR]

The scene is a generated 2048 px pair mirrored-tiled to ``--size`` (as ``bench_registration``'s
13,000 px speed run); the offset map is a smooth field (an affine part + sines, tens of px), written
window by window. Each step runs in a fresh subprocess and reports its peak resident memory
(ru_maxrss), so the numbers are the step's own.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_registration import _tile_raster

OFFSETS_CODE = """
import json, resource, time
import numpy as np
from sarfusion.io.raster import RasterWriter, iter_windows, raster_info
opt = raster_info({optical!r})
t = time.time()
with RasterWriter({out!r}, opt.width, opt.height, 2, np.float32, opt.geotransform, opt.crs_wkt, cog=True) as w:
    for col, row, ww, hh in iter_windows(opt.width, opt.height, 2048):
        r = np.arange(row, row + hh, dtype=np.float32)[:, None]
        c = np.arange(col, col + ww, dtype=np.float32)[None, :]
        dx = 12 + 0.002 * c - 0.001 * r + 6 * np.sin(r / 700) * np.cos(c / 900)
        dy = -8 + 0.001 * c + 0.002 * r + 6 * np.cos(r / 800)
        w.write(np.stack(np.broadcast_arrays(dx, dy)), col, row)
print(json.dumps({{"seconds": time.time() - t, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

ALIGNED_CODE = """
import json, resource, time
from sarfusion.registration.aligned import write_aligned_sar
t = time.time()
r = write_aligned_sar({optical!r}, {sar!r}, {offsets!r}, {out!r})
print(json.dumps({{"seconds": time.time() - t, "valid_fraction": r["valid_fraction"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def _run(code: str) -> dict:
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=13000, help="optical scene size, px (default 13000)")
    ap.add_argument("--work", default=None, help="work folder (default: a temporary one)")
    args = ap.parse_args()
    from sarfusion.io.raster import cog_errors, raster_info
    from sarfusion.registration.testpair import make_test_pair

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        base = make_test_pair(work / "base", size=2048, seed=11)
        opt_info, sar_info = raster_info(base["optical"]), raster_info(base["sar"])
        optical, sar = work / f"optical_{args.size}.tif", work / f"sar_{args.size}.tif"
        sar_size = int(round(args.size * opt_info.pixel_size[0] / sar_info.pixel_size[0]))
        if not optical.exists():
            _tile_raster(base["optical"], optical, args.size)
            _tile_raster(base["sar"], sar, sar_size)
        offsets, aligned = work / "offsets_cog.tif", work / "sar_aligned.tif"
        r = _run(OFFSETS_CODE.format(optical=str(optical), out=str(offsets)))
        print(f"offset map {args.size} x {args.size} (2 x float32) written as a COG: {r['seconds']:.1f} s, "
              f"peak memory {r['peak_rss_mb']:.0f} MB; COG valid: {not cog_errors(offsets)}")
        r = _run(ALIGNED_CODE.format(optical=str(optical), sar=str(sar), offsets=str(offsets), out=str(aligned)))
        info = raster_info(aligned)
        print(f"aligned SAR {info.width} x {info.height} ({info.dtype}, from a {sar_size} px SAR) as a COG: "
              f"{r['seconds']:.1f} s, peak memory {r['peak_rss_mb']:.0f} MB; {100 * r['valid_fraction']:.1f} % with "
              f"SAR data; COG valid: {not cog_errors(aligned)}")


if __name__ == "__main__":
    main()
