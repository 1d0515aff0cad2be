"""One self-contained HTML page per test run (``OUT_report.html``): the scores, a preview of each
capability's product, every output written, the run's settings and its timings.

Images are embedded (``data:`` URIs, JPEG, at most ``IMAGE_WIDTH`` px wide), so the page is one
file to mail or archive; it needs no network and no script to read (one small script only records
how many images decoded, for the headless-browser check).
"""
from __future__ import annotations

import base64
import html
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import cv2
import numpy as np

from sarfusion.io.atomic import atomic_path

IMAGE_WIDTH = 1100
MIN_WIDTH = 520
JPEG_QUALITY = 85
MAX_PER_GROUP = 3

CSS = """
body{font:15px/1.45 -apple-system,'Segoe UI',Roboto,'DejaVu Sans',Arial,sans-serif;color:#1d2733;
  margin:0;background:#f3f5f8}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px}
header{background:#1f3a5f;color:#fff;padding:22px 28px}
header h1{margin:0 0 4px;font-size:24px}
header p{margin:0;opacity:.85}
h2{margin:34px 0 10px;font-size:20px;border-bottom:2px solid #d5dde8;padding-bottom:4px}
h3{margin:18px 0 6px;font-size:16px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{background:#fff;border-radius:8px;padding:12px 16px;min-width:190px;box-shadow:0 1px 3px #0002}
.card b{display:block;font-size:22px;color:#1f3a5f}
.card span{color:#5a6878;font-size:13px}
table{border-collapse:collapse;background:#fff;margin:8px 0 14px;box-shadow:0 1px 3px #0001}
th,td{border:1px solid #dde3ea;padding:5px 10px;text-align:left;vertical-align:top}
th{background:#e9eef4;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:10px 0 18px;background:#fff;padding:10px;border-radius:8px;box-shadow:0 1px 3px #0002}
figure img{max-width:100%;display:block;margin:0 auto;image-rendering:auto}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:0 14px}
figcaption{color:#4a5868;font-size:13px;margin-top:6px}
p.note{color:#4a5868;font-size:13px}
code{font-size:13px;background:#e9eef4;padding:1px 4px;border-radius:3px}
details{background:#fff;padding:6px 12px;border-radius:6px;margin:6px 0}
summary{cursor:pointer;font-weight:600}
"""

COUNT_IMAGES = ("<script>window.addEventListener('load',function(){var n=0;for(var i of document.images)"
                "{if(i.complete&&i.naturalWidth>0)n++;}document.body.dataset.imagesLoaded=n;});</script>")


def embed_image(path: str | Path, width: int = IMAGE_WIDTH, min_width: int = MIN_WIDTH) -> str | None:
    """A PNG/JPEG file as a ``data:image/jpeg`` URI, downscaled to ``width`` px (small images are
    enlarged by a whole factor, pixels kept sharp, to about ``min_width``); None if unreadable."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        return None
    if img.shape[1] > width:
        img = cv2.resize(img, (width, max(1, round(img.shape[0] * width / img.shape[1]))), interpolation=cv2.INTER_AREA)
    elif img.shape[1] * 2 <= min_width:
        k = min_width // img.shape[1]
        img = cv2.resize(img, None, fx=k, fy=k, interpolation=cv2.INTER_NEAREST)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii") if ok else None


def _e(value: Any) -> str:
    return html.escape(str(value))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if not np.isfinite(value):
            return "inf" if value > 0 else str(value)
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f"<td class=num>{_e(_fmt(c))}</td>" if isinstance(c, (int, float)) else f"<td>{_e(c)}</td>" for c in row)
        + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _figure(path: Path, caption: str) -> str:
    uri = embed_image(path)
    if uri is None:
        return ""
    return f'<figure><img src="{uri}" alt="{_e(path.name)}"><figcaption>{_e(caption)}</figcaption></figure>'


def _figures(paths: Sequence[Path], caption: str, grid: bool = False, limit: int = MAX_PER_GROUP) -> str:
    """Up to ``limit`` figures in the given order; ``grid``: side by side where the page is wide."""
    figs = "".join(_figure(p, f"{caption}: {p.stem}") for p in list(paths)[:limit])
    return f"<div class=grid>{figs}</div>" if grid and figs else figs


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, str]]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += _flatten(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", json.dumps(v) if isinstance(v, (list, tuple)) else str(v)))
    return out


def run_settings(data: str | Path, out_csv: str | Path, weights: str | Path) -> dict[str, Any]:
    """What a run depended on: paths, command, versions, device, and every model config saved in
    ``weights`` (``<capability>/*config*.json``)."""
    import torch
    from osgeo import gdal

    from sarfusion import __version__

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    settings: dict[str, Any] = {
        "run": {"data": str(data), "outputs": f"{Path(out_csv).with_suffix('')}_*", "weights": str(weights),
                "command": " ".join(sys.argv), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                "host": platform.node(), "device": device, "sarfusion": __version__,
                "python": platform.python_version(), "torch": torch.__version__, "gdal": gdal.__version__},
        "models": {},
    }
    for cfg in sorted(Path(weights).glob("*/**/*config*.json")):
        if any(part == "runs" or part.endswith("_run") for part in cfg.relative_to(weights).parts[:-1]):
            continue  # resumable run folders repeat the saved config
        try:
            settings["models"][str(cfg.relative_to(weights))] = json.loads(cfg.read_text())
        except (OSError, json.JSONDecodeError):
            continue
    return settings


def _summary_cards(scores: dict) -> str:
    cards = []
    if "buildings" in scores:
        b = scores["buildings"]
        cards.append((f"F1 {b['f1']:.3f}", f"SN6 buildings (P {b['precision']:.3f}, R {b['recall']:.3f})"))
    for name, r in scores.get("registration", {}).items():
        cards.append((f"{r['mean_px']:.2f} px", f"SN9 {name}: mean tie-point error ({r['mean_m']:.2f} m)"))
    for name, t in scores.get("translation", {}).items():
        part = t["held_out"] or t["all"]
        which = "held out" if t["held_out"] else "all inputs (their ground was trained on)"
        cards.append((f"{part['psnr']:.2f} dB", f"{t['kind']} {name}: PSNR, SSIM {part['ssim']:.3f} ({which})"))
    return '<div class="cards">' + "".join(f"<div class=card><b>{_e(v)}</b><span>{_e(k)}</span></div>"
                                            for v, k in cards) + "</div>" if cards else ""


def _scores_section(scores: dict) -> str:
    if not scores:
        return "<h2>Scores</h2><p class=note>No truth was present in the data, so nothing was scored.</p>"
    out = ["<h2>Scores</h2>", _summary_cards(scores)]
    if "buildings" in scores:
        b = scores["buildings"]
        out.append("<h3>SN6 building footprints (SpaceNet F1, IoU &gt; 0.5)</h3>")
        out.append(_table(["F1", "precision", "recall", "TP", "FP", "FN", "tiles"],
                          [[b["f1"], b["precision"], b["recall"], b.get("tp", ""), b.get("fp", ""), b.get("fn", ""),
                            b.get("n_images", "")]]))
    if scores.get("registration"):
        out.append("<h3>SN9 registration (tie points; the score is 100 / (1 + 0.01 mean px))</h3>")
        out.append(_table(["scene", "mean error, px", "mean error, m", "score", "tie points"],
                          [[k, r["mean_px"], r["mean_m"], r["score"], r.get("n_points", "")]
                           for k, r in scores["registration"].items()]))
    if scores.get("translation"):
        out.append("<h3>SAR &rarr; optical translation (against the optical truth; MultiEarth: lower is better)</h3>")
        rows = []
        for name, t in scores["translation"].items():
            for part, label in (("held_out", "held out (ground never trained on)"), ("all", "all inputs")):
                s = t.get(part)
                if s:
                    rows.append([name, t["kind"], label, s["psnr"], s["ssim"], s["multiearth"], s["n_images"]])
        out.append(_table(["folder", "layout", "inputs", "PSNR dB", "SSIM", "MultiEarth", "n"], rows))
        notes = [f"{name}: {t['trained_on']} of the scored inputs were in the model's training set; held out = no "
                 f"input of the same SEN1-2 scene / MultiEarth site was; {t['cloudy_truths_dropped']} cloudy truth "
                 f"image(s) left out" for name, t in scores["translation"].items()]
        out.append("<p class=note>" + "<br>".join(_e(n) for n in notes) + "</p>")
    return "".join(out)


def _capability_sections(result: dict, previews: Path | None) -> str:
    outputs = result.get("outputs", [])
    have = {o["capability"] for o in outputs}
    out = []
    pv = previews if previews is not None and previews.is_dir() else None
    if "buildings" in have:
        info = result.get("footprints") or {}
        out.append("<h2>Building footprints (SpaceNet 6)</h2>")
        if info:
            out.append(f"<p>{info['tile_polygons']} polygons from the tiles (the per-tile CSV) became "
                       f"<b>{info['buildings']}</b> buildings in map coordinates (EPSG:{info['crs_epsg']}): copies "
                       "of one building on overlapping tiles merged, none overlapping. Open "
                       f"<code>{_e(Path(info['footprints']).name)}</code> in QGIS.</p>")
        if pv is not None:
            out.append(_figures(list((pv / "buildings").glob("footprints_map.png")),
                                "Footprints over the SAR mosaic (VV) in map space; green: seen by one tile, "
                                "orange: seen by overlapping tiles and merged into one polygon"))
            out.append(_figures(sorted((pv / "buildings").glob("buildings_*.png")),
                                "Footprints over one SAR tile (left), footprint probability (right)", grid=True, limit=4))
    if "registration" in have:
        out.append("<h2>Registration (SpaceNet 9) and the aligned SAR</h2>")
        out.append("<p>Offset vectors from optical pixels to their SAR counterparts; optical / SAR checkerboards "
                   "before (georeferencing alone) and after resampling the SAR through the offsets (edges "
                   "continue across squares when aligned); the aligned SAR product itself, read back from its "
                   "file.</p>")
        if pv is not None:
            reg = pv / "registration"
            for stem in sorted({p.name.rsplit("_", 1)[0] for p in reg.glob("*_offsets.png")}):
                out.append(f"<h3>{_e(stem)}</h3>")
                for suffix, caption in (("offsets", "Offset vectors"), ("checker", "Checkerboard before | after"),
                                        ("aligned", "Optical | aligned SAR | checkerboard")):
                    out.append(_figures(list(reg.glob(f"{stem}_{suffix}.png")), caption))
    if "colorize" in have and pv is not None:
        out.append("<h2>Colorized SAR (SpaceNet 6 blog)</h2>")
        out.append(_figures(sorted((pv / "colorize").glob("*.png")), "SPAN input | colorized", grid=True, limit=4))
    if "translate" in have and pv is not None:
        out.append("<h2>SAR &rarr; optical translation</h2>")
        translation = result.get("scores", {}).get("translation", {})
        for folder in sorted(p for p in (pv / "translate").glob("*") if p.is_dir()):
            held = set((translation.get(folder.name) or {}).get("held_out_inputs", []))
            panels = sorted(folder.glob("*.png"), key=lambda p: (p.stem not in held, p.stem))
            note = f" ({len(held)} held out of training, shown first)" if held else ""
            out.append(f"<h3>{_e(folder.name)}{_e(note)}</h3>")
            out.append(_figures(panels[:4], "SAR | truth | generated", grid=True, limit=4))
    return "".join(out)


def _outputs_section(outputs: list[dict]) -> str:
    rows = [[o["capability"], o["output"], o.get("input", "")] for o in outputs]
    return "<h2>Outputs</h2>" + _table(["product", "written to", "from"], rows)


def _settings_section(settings: dict) -> str:
    out = ["<h2>Settings</h2>", _table(["setting", "value"], list(settings.get("run", {}).items()))]
    for name, cfg in settings.get("models", {}).items():
        out.append(f"<details><summary>{_e(name)}</summary>{_table(['key', 'value'], _flatten(cfg))}</details>")
    return "".join(out)


def _timings_section(timings: dict[str, float]) -> str:
    if not timings:
        return ""
    total = timings.get("total")
    rows = [[k, round(v, 1)] for k, v in timings.items() if k != "total"]
    if total is not None:
        rows.append(["total", round(total, 1)])
    return "<h2>Timings</h2>" + _table(["stage", "seconds"], rows)


def write_report(path: str | Path, result: dict, settings: dict, timings: dict[str, float],
                 previews: str | Path | None) -> Path:
    """Write the run's page. ``result``: :func:`sarfusion.pipeline.test_all`'s ``outputs`` /
    ``scores`` (+ ``footprints``); ``settings``: :func:`run_settings`; ``timings``: stage -> seconds;
    ``previews``: the run's preview folder (``OUT_previews``), or None."""
    previews = Path(previews) if previews is not None else None
    run = settings.get("run", {})
    body = "".join([
        _scores_section(result.get("scores", {})),
        _capability_sections(result, previews),
        _outputs_section(result.get("outputs", [])),
        _settings_section(settings),
        _timings_section(timings),
    ])
    n_images = body.count("<img ")
    page = (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>sarfusion run report</title>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{CSS}</style></head>"
            f"<body data-images='{n_images}'><header><h1>sarfusion run report</h1>"
            f"<p>{_e(run.get('data', ''))} &rarr; {_e(run.get('outputs', ''))} &middot; {_e(run.get('started', ''))}"
            f" &middot; {_e(run.get('device', ''))}</p></header><main>{body}</main>{COUNT_IMAGES}</body></html>")
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Path(path)
