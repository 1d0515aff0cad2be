"""Time the demo data generation: 40 SN6 tiles at 900 px plus one 4096 px SN9 scene.

Target: under a minute on 2 cores. The two generators run side by side in two processes (one
per core), as `make demo` may do; each is also timed alone.

    .venv/bin/python bench/bench_synth.py [--tiles 40] [--size 900] [--sn9-size 4096] [--out DIR]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def _sn6(out: str, tiles: int, size: int) -> tuple[float, float]:
    from sarfusion.synth.sn6 import generate_sn6
    t0, c0 = time.perf_counter(), time.process_time()
    generate_sn6(Path(out) / "sn6", tiles, size=size, seed=0)
    return time.perf_counter() - t0, time.process_time() - c0


def _sn9(out: str, size: int) -> tuple[float, float]:
    from sarfusion.synth.sn9 import generate_sn9
    t0, c0 = time.perf_counter(), time.process_time()
    generate_sn9(Path(out) / "sn9", size=size, seed=0)
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiles", type=int, default=40)
    ap.add_argument("--size", type=int, default=900)
    ap.add_argument("--sn9-size", type=int, default=4096)
    ap.add_argument("--out", default=None, help="keep the data here (default: a temp folder)")
    args = ap.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="bench_synth_")
    print(f"cpu cores visible: {os.cpu_count()}, output: {out}")
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=2) as pool:
        f6 = pool.submit(_sn6, out, args.tiles, args.size)
        f9 = pool.submit(_sn9, out, args.sn9_size)
        t6, t9 = f6.result(), f9.result()
    total = time.perf_counter() - t0
    # CPU seconds (user + system of the worker) tell the cost even on a machine shared with others
    print(f"SN6 {args.tiles} tiles x {args.size} px: {t6[0]:.1f} s wall, {t6[1]:.1f} s CPU")
    print(f"SN9 1 scene x {args.sn9_size} px: {t9[0]:.1f} s wall, {t9[1]:.1f} s CPU")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} (on {os.cpu_count()} cores)")
    print(f"demo data total (2 processes side by side): {total:.1f} s (target < 60 s)")


if __name__ == "__main__":
    main()
