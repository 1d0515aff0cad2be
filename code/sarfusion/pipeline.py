"""What ``train.sh``, ``test.sh`` and ``make demo`` run: detect the data, call each capability.

``sarfusion train DATA``  -> weights/{colorize,buildings,registration,translate}/
``sarfusion test DATA OUT.csv`` -> OUT.csv (SN6 submission), OUT_buildings.gpkg (map footprints),
    OUT_offsets/<scene>_offsets.tif and OUT_aligned/<scene>_sar_aligned.tif (SN9), OUT_colorized/,
    OUT_translated/ (SAR->optical), OUT_scores.json (every score where truth was present),
    OUT_previews/ and OUT_report.html
``sarfusion demo`` -> synthetic data, then train + test on it, printing where everything is.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sarfusion.datasets.detect import DataInventory, detect_data
from sarfusion.errors import InputError
from sarfusion.io.atomic import atomic_path

log = logging.getLogger("sarfusion.pipeline")


def _stage(name: str) -> float:
    log.info("==== %s", name)
    return time.time()


def train_all(data: str | Path, weights: str | Path, work: str | Path, preset: str = "demo",
              translation_holdout: int = 0, timings: dict[str, float] | None = None,
              encoder_weights: str | None = None, folds: int | None = None) -> dict[str, Any]:
    """Train every capability the data supports; weights go to ``weights/<capability>/``.

    ``encoder_weights``: the building encoder's initialisation (``imagenet``, ``none`` or a file;
    default: the preset's), checked before anything is trained. ``folds``: the building model's
    easting-band folds (default: the preset's; full: 8).

    ``translation_holdout``: the last N translation inputs are kept out of training (their scores
    in :func:`test_all` are then on inputs the model never saw). ``timings``: filled with the
    seconds each stage took.
    """
    inv = detect_data(data)
    log.info("data: %s", inv.summary())
    weights, work = Path(weights), Path(work)
    timings = timings if timings is not None else {}
    done: dict[str, Any] = {}
    if inv.sn6_train:
        from sarfusion.config import choose_preset
        from sarfusion.models.segmentation import resolve_encoder_weights
        from sarfusion.tasks.buildings import PRESETS as BUILDING_PRESETS
        from sarfusion.tasks.buildings import train_buildings
        from sarfusion.tasks.colorize import train_colorizer
        aoi = inv.sn6_train[0]
        buildings_cfg = choose_preset(BUILDING_PRESETS, preset)
        if encoder_weights:
            buildings_cfg.encoder_weights = encoder_weights
        if folds:
            buildings_cfg.folds = folds
        resolve_encoder_weights(buildings_cfg.encoder, buildings_cfg.encoder_weights)  # fail before training
        t = _stage(f"SN6 colorization GAN on {aoi}")
        done["colorize"] = str(train_colorizer(aoi, weights / "colorize", preset=preset, work_dir=work / "colorize"))
        timings["train: colorization"] = time.time() - t
        log.info("colorization trained in %.0f s", timings["train: colorization"])
        t = _stage(f"SN6 building segmentation on {aoi}")
        done["buildings"] = str(train_buildings(aoi, weights / "buildings", preset=preset, input_mode="sar4",
                                                work_dir=work / "buildings", config=buildings_cfg))
        timings["train: buildings"] = time.time() - t
        log.info("buildings trained in %.0f s", timings["train: buildings"])
    train_scenes = [s for s in inv.sn9 if s.split == "train" and s.tiepoints is not None]
    if train_scenes:
        from sarfusion.registration import train_keypoints
        from sarfusion.registration.descriptors import train_descriptors
        t = _stage(f"SN9 keypoint networks on {len(train_scenes)} scene(s)")
        done["registration"] = str(train_keypoints(train_scenes[0].optical.parent, weights / "registration",
                                                   preset=preset))
        timings["train: SN9 keypoints"] = time.time() - t
        log.info("keypoints trained in %.0f s", timings["train: SN9 keypoints"])
        t = _stage(f"SN9 dense descriptors on {len(train_scenes)} scene(s)")
        done["descriptors"] = str(train_descriptors(train_scenes[0].optical.parent, weights / "registration",
                                                    preset=preset))
        timings["train: SN9 descriptors"] = time.time() - t
        log.info("descriptors trained in %.0f s", timings["train: SN9 descriptors"])
    translation_roots = inv.sen12 + inv.multiearth + inv.pairs
    if translation_roots:
        from sarfusion.tasks.translate import train_translation
        t = _stage(f"SAR->optical translation on {', '.join(map(str, translation_roots))}")
        # one translator per layout (SEN1-2, MultiEarth, pairs), each trained on every folder of its kind
        done["translate"] = str(train_translation(inv.root, weights / "translate", preset=preset,
                                                  work_dir=work / "translate", holdout=translation_holdout))
        timings["train: translation"] = time.time() - t
        log.info("translation trained in %.0f s", timings["train: translation"])
    return done


MAX_PREVIEWS = 64  # per capability and folder: a real test set has thousands of tiles


def test_all(data: str | Path, out_csv: str | Path, weights: str | Path, preview: bool = True,
             timings: dict[str, float] | None = None) -> dict[str, Any]:
    """Run every trained capability on ``data``; scores what has truth. Returns outputs and scores.

    Writes beside ``out_csv`` (``OUT`` = its path without ``.csv``): the SN6 submission ``OUT.csv``
    and ``OUT_buildings.gpkg`` (map footprints), ``OUT_offsets/`` and ``OUT_aligned/`` (SN9),
    ``OUT_colorized/``, ``OUT_translated/``, ``OUT_scores.json`` where truth is present,
    ``OUT_previews/`` (with ``preview``) and ``OUT_report.html``. ``timings``: earlier stages
    (e.g. the demo's training) to show in the report.

    Under ``torchrun --nproc_per_node=N`` the work is shared out (SN6 tiles, colorized tiles, SN9
    scenes and translation folders round-robin over the ranks, each on its own GPU) and rank 0
    writes the same files a single process writes; the other ranks return an empty result.
    """
    from sarfusion.engine import gather_objects, process_group
    from sarfusion.report import run_settings, write_report

    rank, world = process_group()

    t_start = time.time()
    inv = detect_data(data)
    log.info("data: %s", inv.summary())
    weights, out_csv = Path(weights), Path(out_csv)
    base = out_csv.with_suffix("")
    previews = Path(f"{base}_previews") if preview else None
    settings = run_settings(data, out_csv, weights)
    timings = dict(timings or {})
    scores: dict[str, Any] = {}
    outputs: list[dict[str, str]] = []
    result: dict[str, Any] = {"outputs": outputs, "scores": scores}
    keyed: list[tuple[tuple[int, int], dict[str, str]]] = []  # (stage, item) -> output row, merged over ranks
    _require_weights(inv, weights)
    if inv.sn6_test:
        from sarfusion.datasets.sn6 import find_tiles
        from sarfusion.tasks.buildings import footprints_summary, predict_buildings, write_footprint_map
        aoi = inv.sn6_test[0]
        t = _stage(f"SN6 buildings on {aoi}")
        geo = Path(f"{base}_buildings.gpkg")
        predict_buildings(aoi, weights / "buildings", out_csv,
                          preview_dir=(previews / "buildings") if previews else None, geo_path=geo,
                          shard=(rank, world))
        keyed.append(((0, 0), {"capability": "buildings", "input": str(aoi), "output": str(out_csv)}))
        keyed.append(((0, 1), {"capability": "buildings (map)", "input": str(aoi), "output": str(geo)}))
        if rank == 0:
            result["footprints"] = footprints_summary(out_csv, geo)
        if previews and rank == 0:
            write_footprint_map(find_tiles(aoi), geo, previews / "buildings" / "footprints_map.png")
        timings["test: SN6 buildings"] = time.time() - t
        if inv.sn6_test_truth is not None and rank == 0:
            from sarfusion.metrics.buildings import score_buildings
            scores["buildings"] = score_buildings(inv.sn6_test_truth, out_csv)
            log.info("SN6 buildings: F1 %.4f  P %.4f  R %.4f  (truth %s)", scores["buildings"]["f1"],
                     scores["buildings"]["precision"], scores["buildings"]["recall"], inv.sn6_test_truth)
        if (weights / "colorize").is_dir():
            from sarfusion.tasks.colorize import colorize_tiles
            t = _stage(f"SN6 colorization of {aoi}")
            sar_paths = sorted((aoi / "SAR-Intensity").glob("*.tif"))
            mine = sar_paths[rank::world]  # previews stay those of the first MAX_PREVIEWS tiles overall
            colorize_tiles(mine, weights / "colorize", Path(f"{base}_colorized"),
                           preview_dir=(previews / "colorize") if previews else None,
                           max_previews=len(range(rank, min(len(sar_paths), MAX_PREVIEWS), world)))
            keyed.append(((1, 0), {"capability": "colorize", "input": str(aoi), "output": f"{base}_colorized"}))
            timings["test: SN6 colorization"] = time.time() - t
    test_scenes = [s for s in inv.sn9 if s.split != "train"] or inv.sn9
    if test_scenes:
        from sarfusion.registration.api import register_scene
        reg_weights = weights / "registration"
        for index, scene in list(enumerate(test_scenes))[rank::world]:
            t = _stage(f"SN9 registration of {scene.name}")
            out = Path(f"{base}_offsets") / f"{scene.name}_offsets.tif"
            aligned = Path(f"{base}_aligned") / f"{scene.name}_sar_aligned.tif"
            register_scene(scene.optical, scene.sar, out, mode="dense",
                           weights_dir=reg_weights if reg_weights.is_dir() else None,
                           preview_dir=(previews / "registration") if previews else None, aligned_sar_path=aligned)
            keyed.append(((2, 2 * index), {"capability": "registration", "input": str(scene.optical), "output": str(out)}))
            keyed.append(((2, 2 * index + 1), {"capability": "aligned SAR", "input": str(scene.sar),
                                                "output": str(aligned)}))
            timings[f"test: SN9 {scene.name}"] = time.time() - t
            if scene.tiepoints is not None:
                from sarfusion.metrics.tiepoints import score_tiepoints
                s = score_tiepoints(scene.optical, scene.sar, scene.tiepoints, out)
                scores.setdefault("registration", {})[scene.name] = s
                log.info("SN9 %s: mean %.2f px (%.2f m), score %.2f", scene.name, s["mean_px"], s["mean_m"], s["score"])
    translation_roots = inv.sen12 + inv.multiearth + inv.pairs
    if translation_roots and (weights / "translate").is_dir():
        from sarfusion.tasks.translate import score_translated, translate
        for index, root in list(enumerate(translation_roots))[rank::world]:
            t = _stage(f"SAR->optical translation of {root}")
            out_dir = Path(f"{base}_translated") / root.name
            translate(root, out_dir, weights / "translate",
                      preview_dir=(previews / "translate" / root.name) if previews else None, max_previews=MAX_PREVIEWS)
            keyed.append(((3, index), {"capability": "translate", "input": str(root), "output": str(out_dir)}))
            # scored wherever the layout holds optical truth (tasks.translate.TRUTH_FINDERS)
            translation = score_translated(root, out_dir, weights / "translate")
            if translation is not None:
                scores.setdefault("translation", {})[root.name] = translation
            timings[f"test: translation {root.name}"] = time.time() - t
    if world > 1:  # rank 0 writes what every rank did, in the single-process order
        parts = gather_objects((keyed, scores, timings))
        if rank != 0:
            return {"outputs": [], "scores": {}, "rank": rank}
        keyed, scores, timings = [], {}, {}
        for part_keyed, part_scores, part_timings in parts:
            keyed += part_keyed
            for k, v in part_scores.items():
                if k in ("registration", "translation"):  # per scene / folder, from whichever rank ran it
                    scores.setdefault(k, {}).update(v)
                else:
                    scores.setdefault(k, v)
            for k, v in part_timings.items():
                timings[k] = max(timings.get(k, 0.0), v)
        # the order a single process writes: stages, then scenes / folders in test order
        names = {"registration": [s.name for s in test_scenes], "translation": [r.name for r in translation_roots]}
        result["scores"] = scores = {k: ({n: scores[k][n] for n in names[k] if n in scores[k]} if k in names
                                         else scores[k])
                                     for k in ("buildings", "registration", "translation") if k in scores}
    outputs += [row for _, row in sorted(keyed, key=lambda kv: kv[0])]
    if scores:
        with atomic_path(Path(f"{base}_scores.json")) as tmp:
            tmp.write_text(json.dumps(scores, indent=2, default=float))
        outputs.append({"capability": "scores", "input": str(data), "output": f"{base}_scores.json"})
    report = Path(f"{base}_report.html")
    outputs.append({"capability": "report", "input": str(data), "output": str(report)})
    if not inv.sn6_test:
        _write_manifest(out_csv, outputs)
    timings["test: total"] = time.time() - t_start
    # earlier stages (demo data, training) + this whole test run
    timings["total"] = sum(v for k, v in timings.items() if not k.startswith("test: ")) + timings["test: total"]
    write_report(report, result, settings, timings, previews)
    log.info("report: %s", report)
    result["timings"] = timings
    return result


def _require_weights(inv: DataInventory, weights: Path) -> None:
    missing = []
    if inv.sn6_test and not (weights / "buildings").is_dir():
        missing.append("buildings (SN6 test AOI present)")
    if missing:
        raise InputError(f"no trained weights for: {', '.join(missing)}; run train.sh first", weights)


def _write_manifest(out_csv: Path, outputs: list[dict[str, str]]) -> None:
    """Without SN6 test tiles OUT.csv lists what was written, one row per output."""
    import pandas as pd
    from sarfusion.io.vector import write_csv_atomic
    write_csv_atomic(out_csv, pd.DataFrame(outputs, columns=["capability", "input", "output"]))


DEMO_TRANSLATION_HOLDOUT = 4  # the demo's last 4 SEN1-2 pairs (one synthetic scene) are not trained on


def _generate_demo_data(data: Path, sn6_tiles: int, sn9_size: int, seed: int, sn6_size: int = 900,
                        sen12_pairs: int = 24) -> None:
    """SN6 tiles, SN9 scenes and SEN1-2 pairs under ``data/sn6``, ``sn9``, ``sen12``; a kind whose
    folder exists is kept. Each kind is written into ``data/.<kind>.partial`` and renamed when
    complete, so an interrupted run leaves no half-written folder for the next one to reuse. With
    two or more cores the SN6 city is generated by a second process (``sarfusion synth sn6``, tied to
    this one: it dies with it) while this one makes the SN9 scenes and SEN1-2 pairs: the halves take
    about as long, so the stage takes the longer one instead of the sum. Every generator is seeded:
    the data do not change."""
    from sarfusion.engine import usable_workers
    from sarfusion.synth.sn6 import generate_sn6
    from sarfusion.synth.sn9 import generate_sn9

    def partial(kind: str) -> Path:
        path = data / f".{kind}.partial"
        shutil.rmtree(path, ignore_errors=True)
        return path

    sn6_proc = None
    if not (data / "sn6").is_dir():
        if usable_workers() >= 1:
            # a fresh interpreter, not a fork: this process may already hold torch / GDAL threads
            sn6_proc = _cli_child(["synth", "sn6", "--out", str(partial("sn6")), "--tiles", str(sn6_tiles),
                                   "--size", str(sn6_size), "--seed", str(seed), "--preview"])
        else:
            sn6 = partial("sn6")
            generate_sn6(sn6, tiles=sn6_tiles, size=sn6_size, seed=seed, preview=True)
            sn6.rename(data / "sn6")
    try:
        if not (data / "sn9").is_dir():
            sn9 = partial("sn9")
            generate_sn9(sn9 / "train", size=sn9_size // 2, seed=seed + 100, scenes=2, split="train")
            generate_sn9(sn9 / "test", size=sn9_size, seed=seed + 200, scenes=1, split="test", preview=True)
            sn9.rename(data / "sn9")
        if not (data / "sen12").is_dir():
            from sarfusion.synth.landscape import write_sen12
            sen12 = partial("sen12")
            write_sen12(sen12, pairs=sen12_pairs, seed=seed)
            sen12.rename(data / "sen12")
        if sn6_proc is not None and sn6_proc.wait() != 0:  # its own error line is already on stderr
            raise InputError(f"generating the SN6 demo tiles failed (exit status {sn6_proc.returncode})", data)
    except BaseException:
        if sn6_proc is not None and sn6_proc.poll() is None:
            sn6_proc.kill()
            sn6_proc.wait()
        raise
    if sn6_proc is not None:
        (data / ".sn6.partial").rename(data / "sn6")


# Run as ``python -c _TIED_CHILD <parent pid> <sarfusion args>``: on Linux the child asks the kernel
# for SIGTERM when its parent dies (PR_SET_PDEATHSIG = 1), so a demo killed by SIGKILL, a
# scheduler's SIGTERM or ``timeout`` takes its child with it instead of leaving it writing into the
# data folder a rerun uses; it gives up at once if the parent is already gone.
_TIED_CHILD = """
import ctypes, os, runpy, signal, sys
if sys.platform.startswith("linux"):
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)
    if os.getppid() != int(sys.argv[1]):
        sys.exit(1)
sys.argv = ["sarfusion"] + sys.argv[2:]
runpy.run_module("sarfusion", run_name="__main__", alter_sys=True)
"""


def _cli_child(args: list[str]) -> subprocess.Popen:
    """``python -m sarfusion ARGS`` in a fresh interpreter that dies with this process."""
    return subprocess.Popen([sys.executable, "-c", _TIED_CHILD, str(os.getpid()), *args], stdout=subprocess.DEVNULL)


def run_demo(out: str | Path, weights: str | Path, preset: str = "demo", sn6_tiles: int = 40,
             sn9_size: int = 4096, seed: int = 0) -> dict[str, Any]:
    """Synthetic data for every capability, then train and test on it (the ``make demo`` job)."""
    out = Path(out)
    data = out / "data"
    t_all = _stage(f"generating synthetic demo data in {data}")
    _generate_demo_data(data, sn6_tiles, sn9_size, seed)
    timings = {"demo data": time.time() - t_all}
    t = time.time()
    trained = train_all(data, weights, out / "work", preset=preset, translation_holdout=DEMO_TRANSLATION_HOLDOUT,
                        timings=timings)
    t_train = time.time() - t
    result = test_all(data, out / "results" / "out.csv", weights, preview=True, timings=timings)
    result.update(trained=trained, train_seconds=round(t_train, 1), total_seconds=round(time.time() - t_all, 1))
    return result


# CLI --------------------------------------------------------------------------------------------
def register(sub: argparse._SubParsersAction) -> None:
    from sarfusion.cli import add_json_flag
    from sarfusion.tasks.buildings_commands import ENCODER_WEIGHTS_HELP

    p = sub.add_parser("train", help="train every capability the data supports (what train.sh runs)",
                       description="Detect what DATA holds and train each capability on it. " + _layout_help())
    p.add_argument("data", type=Path, help="data root (may be read-only)")
    p.add_argument("--weights", type=Path, default=Path("weights"), help="where models are written (default: weights)")
    p.add_argument("--work", type=Path, default=Path("wdata"), help="scratch folder (default: wdata)")
    p.add_argument("--preset", default="demo", choices=["demo", "cpu", "full"],
                   help="demo: tiny models, CPU minutes; cpu: the recipes meant for real data on a CPU (translation "
                        "on real pairs, <= 15 min per layout on 2 cores; the other capabilities use demo); full: "
                        "the competition recipes, GPU (default: demo)")
    p.add_argument("--encoder-weights", default=None, metavar="imagenet|none|PATH",
                   help=ENCODER_WEIGHTS_HELP + " (default: the preset's: demo / cpu none, full imagenet)")
    p.add_argument("--folds", type=int, default=None,
                   help="building model folds (easting bands; an ensemble with out-of-fold threshold calibration; "
                        "default: the preset's: demo / cpu 1, full 8)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("test", help="run trained models on DATA and write OUT.csv (what test.sh runs)",
                       description="Detect what DATA holds, run the trained models from --weights (no retraining) and "
                                   "write: OUT.csv (SN6 submission, or a manifest when DATA has no SN6 tiles), "
                                   "OUT_buildings.gpkg (SN6 footprints in map coordinates, one polygon per "
                                   "building), OUT_offsets/<scene>_offsets.tif and OUT_aligned/<scene>_sar_aligned.tif "
                                   "(SN9 offset maps and the SAR resampled onto the optical grid), "
                                   "OUT_translated/ (SAR->optical), OUT_colorized/ (SN6 test tiles), "
                                   "OUT_scores.json where truth is present (SN6 truth CSV, SN9 tie points, the "
                                   "optical of SEN1-2 / MultiEarth), OUT_previews/ and OUT_report.html (one page: "
                                   "scores, previews, settings, timings). Rasters are Cloud-Optimized GeoTIFFs. "
                                   + _layout_help())
    p.add_argument("data", type=Path)
    p.add_argument("out_csv", type=Path)
    p.add_argument("--weights", type=Path, default=Path("weights"), help="trained models (default: weights)")
    p.add_argument("--preview", action=argparse.BooleanOptionalAction, default=True,
                   help="write PNG previews to OUT_previews/ (the report shows them; --no-preview skips both)")
    add_json_flag(p)
    p.set_defaults(func=_cmd_test)

    p = sub.add_parser("demo", help="generate synthetic scenes, train everything (demo preset), test and score",
                       description="The make-demo job: synthetic SN6 / SN9 / SEN1-2 data with known truth, "
                                   "every pipeline trained with the demo preset, tested and scored.")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="outputs (default: demo_out)")
    p.add_argument("--weights", type=Path, default=Path("weights"), help="models (default: weights)")
    p.add_argument("--preset", default="demo", choices=["demo", "full"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fresh", action="store_true", help="delete --out first (regenerate the data)")
    add_json_flag(p)
    p.set_defaults(func=_cmd_demo)


def _layout_help() -> str:
    from sarfusion.datasets import detect
    return "Accepted DATA layout: " + detect.EXPECTED.split(":", 1)[1]


def _cmd_train(args: argparse.Namespace) -> int:
    done = train_all(args.data, args.weights, args.work, args.preset, encoder_weights=args.encoder_weights,
                     folds=args.folds)
    for k, v in done.items():
        log.info("trained %s -> %s", k, v)
    return 0


def _cmd_test(args: argparse.Namespace) -> int:
    result = test_all(args.data, args.out_csv, args.weights, preview=args.preview)
    if args.json:
        from sarfusion.cli import print_json
        print_json(result)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.fresh and args.out.exists():
        shutil.rmtree(args.out)
    result = run_demo(args.out, args.weights, args.preset, seed=args.seed)
    if args.json:
        from sarfusion.cli import print_json
        print_json(result)
        return 0
    print(f"\nDemo finished in {result['total_seconds']:.0f} s (training {result['train_seconds']:.0f} s).")
    print(f"  weights:  {args.weights}/")
    for o in result["outputs"]:
        print(f"  {o['capability']:<13} {o['output']}")
    print(f"  scores:   {args.out / 'results' / 'out_scores.json'}")
    print(f"  report:   {args.out / 'results' / 'out_report.html'}")
    s = result["scores"]
    if "buildings" in s:
        b = s["buildings"]
        print(f"  SN6 buildings F1 {b['f1']:.3f} (P {b['precision']:.3f}, R {b['recall']:.3f}) on the synthetic test part")
    for name, r in s.get("registration", {}).items():
        print(f"  SN9 {name}: {r['mean_px']:.1f} px mean tie-point error ({r['mean_m']:.2f} m)")
    for name, r in s.get("translation", {}).items():
        part, which = (r["held_out"], "held-out") if r["held_out"] else (r["all"], "trained-on")
        print(f"  translation {name}: PSNR {part['psnr']:.2f} dB, SSIM {part['ssim']:.3f} on {part['n_images']} "
              f"{which} inputs")
    return 0
