"""Template matching by FFT: multi-channel zero-mean normalised cross-correlation, batched.

Works on CPU or CUDA tensors (``torch.fft``); every template is matched inside its own search
window, so thousands of grid nodes are matched in a few batched FFTs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class MatchResult:
    """Per template: ``shift`` ``(N, 2)`` float32 (dy, dx) of the best match relative to the
    search-window centre, in pixels of the matched level, sub-pixel; ``score`` ``(N,)`` its NCC in
    [-1, 1]; ``ratio`` ``(N,)`` best / second-best NCC (distinctiveness, >= 1 is good);
    ``on_edge`` ``(N,)`` bool, the peak lies on the border of the search range (unreliable)."""

    shift: np.ndarray
    score: np.ndarray
    ratio: np.ndarray
    on_edge: np.ndarray


def _box_sum(x: torch.Tensor, t: int) -> torch.Tensor:
    """Sums of every ``t`` x ``t`` window of ``x`` ``(..., S, S)`` -> ``(..., S-t+1, S-t+1)``."""
    c = torch.nn.functional.pad(x.cumsum(-1).cumsum(-2), (1, 0, 1, 0))
    return c[..., t:, t:] - c[..., :-t, t:] - c[..., t:, :-t] + c[..., :-t, :-t]


def fast_fft_size(n: int) -> int:
    """Smallest m >= n whose only prime factors are 2, 3 and 5 (fast FFT lengths)."""
    m = n
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def ncc_map(templates: torch.Tensor, searches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Zero-mean NCC of each template at every position inside its search window.

    Args:
        templates: ``(N, C, t, t)`` float32.
        searches: ``(N, C, S, S)`` float32 with ``S >= t``.

    Returns:
        ``(N, S-t+1, S-t+1)`` float32; entry (i, j) scores the template placed with its top-left
        at (i, j) of the search window. Channels are pooled: each placement compares two ``C*t*t`` vectors, each
        centred on its own mean.
    """
    if templates.ndim != 4 or searches.ndim != 4 or templates.shape[:2] != searches.shape[:2]:
        raise ValueError(f"ncc_map expects (N, C, t, t) and (N, C, S, S); got {tuple(templates.shape)}"
                         f" and {tuple(searches.shape)}")
    n, c, t, _ = templates.shape
    s = searches.shape[-1]
    size = fast_fft_size(s)  # zero padding past s changes nothing in the valid region
    tz = templates - templates.mean(dim=(1, 2, 3), keepdim=True)
    tnorm = tz.pow(2).sum(dim=(1, 2, 3)).sqrt()  # (N,)
    fs = torch.fft.rfft2(searches, s=(size, size))
    ft = torch.fft.rfft2(tz, s=(size, size))
    corr = torch.fft.irfft2((fs * ft.conj()).sum(dim=1), s=(size, size))[:, : s - t + 1, : s - t + 1]
    # The template is zero-mean over all its values, so the search window's energy is taken
    # about its own (all-channel) local mean: two single-channel box sums.
    local_sum = _box_sum(searches.sum(dim=1), t)
    local_sq = _box_sum(searches.pow(2).sum(dim=1), t)
    energy = (local_sq - local_sum * local_sum / (c * t * t)).clamp_min(0)
    return corr / (tnorm[:, None, None] * energy.sqrt() + eps)


def masked_ncc_map(templates: torch.Tensor, searches: torch.Tensor, template_masks: torch.Tensor,
                   search_masks: torch.Tensor, min_overlap: float = 0.5, eps: float = 1e-6) -> torch.Tensor:
    """Zero-mean NCC of each template at every placement, over the pixels valid in both images only.

    Masked NCC (Padfield, "Masked object registration in the Fourier domain", 2012): the means and
    energies are taken over the overlap of the template's and the placed search window's valid
    pixels, so padding (0 outside a scene footprint) adds no structure. Unmasked NCC sees the
    footprint border as a strong edge and pulls templates near the scene edges onto the shift
    that aligns the two borders.

    Args:
        templates: ``(N, C, t, t)`` float32.
        searches: ``(N, C, S, S)`` float32.
        template_masks: ``(N, 1, t, t)`` float32 in {0, 1} (1: valid).
        search_masks: ``(N, 1, S, S)`` float32 in {0, 1}.
        min_overlap: placements whose overlap is under this fraction of ``t * t`` score -1.

    Returns:
        ``(N, S-t+1, S-t+1)`` float32, as :func:`ncc_map` (equal to it where both masks are all 1).
    """
    n, c, t, _ = templates.shape
    s = searches.shape[-1]
    size = fast_fft_size(s)
    v = s - t + 1
    mt, ms = template_masks, search_masks
    tm = templates * mt
    sm = searches * ms

    def fft(x: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft2(x, s=(size, size))

    def corr(fa: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
        # sum over x (and channels) of a(x + u) b(x), u in the valid range, from the FFTs of a, b
        return torch.fft.irfft2((fa * fb.conj()).sum(dim=1), s=(size, size))[:, :v, :v]

    f_ms = fft(ms)  # serves the template-side sums (and the overlap of cut templates)
    sm_sum, sm_sq = sm.sum(dim=1, keepdim=True), sm.pow(2).sum(dim=1, keepdim=True)
    if bool((mt >= 1).all()):
        # Full templates (the usual case: only the SAR side is masked): the sums over the
        # search window under the template's footprint are plain box sums, no FFT needed.
        overlap = _box_sum(ms[:, 0], t)
        sum_s = _box_sum(sm_sum[:, 0], t)
        sum_ss = _box_sum(sm_sq[:, 0], t)
    else:
        f_mt = fft(mt)
        overlap = corr(f_ms, f_mt).clamp_min(0).round()           # pixels valid in both
        sum_s = corr(fft(sm_sum), f_mt)
        sum_ss = corr(fft(sm_sq), f_mt)
    count = overlap * c                                            # values compared
    sum_t = corr(f_ms, fft(tm.sum(dim=1, keepdim=True)))
    sum_tt = corr(f_ms, fft(tm.pow(2).sum(dim=1, keepdim=True)))
    sum_ts = corr(fft(sm), fft(tm))
    safe = count.clamp_min(1)
    num = sum_ts - sum_t * sum_s / safe
    var_t = (sum_tt - sum_t * sum_t / safe).clamp_min(0)
    var_s = (sum_ss - sum_s * sum_s / safe).clamp_min(0)
    out = num / ((var_t * var_s).sqrt() + eps)
    return torch.where(overlap >= min_overlap * t * t, out, torch.full_like(out, -1.0))


def _parabola(lo: torch.Tensor, mid: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Sub-pixel offset in [-0.5, 0.5] of the vertex of the parabola through three samples."""
    den = lo - 2 * mid + hi
    off = 0.5 * (lo - hi) / torch.where(den.abs() < 1e-9, torch.full_like(den, -1e-9), den)
    return off.clamp(-0.5, 0.5)


def _subpixel_shift(ncc: torch.Tensor, r: torch.Tensor, c: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shifts ``(N, 2)`` (dy, dx) of the integer placements ``(r, c)`` (one per map of ``ncc``
    ``(N, H, W)``) relative to the map centre, refined by a parabola along each axis, and whether
    each lies inside the map along rows / columns (on a border axis the integer position is kept)."""
    n, h, w = ncc.shape
    ar = torch.arange(n, device=ncc.device)
    mid = ncc[ar, r, c]
    dr = _parabola(ncc[ar, (r - 1).clamp(0, h - 1), c], mid, ncc[ar, (r + 1).clamp(0, h - 1), c])
    dc = _parabola(ncc[ar, r, (c - 1).clamp(0, w - 1)], mid, ncc[ar, r, (c + 1).clamp(0, w - 1)])
    inside_r = (r > 0) & (r < h - 1)
    inside_c = (c > 0) & (c < w - 1)
    dr = torch.where(inside_r, dr, torch.zeros_like(dr))
    dc = torch.where(inside_c, dc, torch.zeros_like(dc))
    shift = torch.stack([r.float() + dr - (h - 1) / 2, c.float() + dc - (w - 1) / 2], dim=1)
    return shift, inside_r, inside_c


def find_peaks(ncc: torch.Tensor, exclude: int = 2) -> MatchResult:
    """Best placement per NCC map with parabolic sub-pixel refinement and a distinctiveness ratio.

    ``ncc``: ``(N, H, W)``; shifts are relative to the map centre ((H-1)/2, (W-1)/2).
    ``exclude``: half-size of the neighbourhood masked around the best peak before the second one.
    """
    n, h, w = ncc.shape
    flat = ncc.reshape(n, -1)
    best, idx = flat.max(dim=1)
    r, c = idx // w, idx % w

    shift, inside_r, inside_c = _subpixel_shift(ncc, r, c)
    rows = torch.arange(h, device=ncc.device)[None, :, None]
    cols = torch.arange(w, device=ncc.device)[None, None, :]
    near = ((rows - r[:, None, None]).abs() <= exclude) & ((cols - c[:, None, None]).abs() <= exclude)
    second = ncc.masked_fill(near, -1.0).reshape(n, -1).max(dim=1).values
    ratio = (best + 1) / (second + 1).clamp_min(1e-6)
    if min(h, w) < 4 * exclude + 3:  # too small a map for a meaningful second peak
        ratio = torch.full_like(ratio, float("inf"))
    return MatchResult(
        shift=shift.cpu().numpy().astype(np.float32),
        score=best.cpu().numpy().astype(np.float32),
        ratio=ratio.cpu().numpy().astype(np.float32),
        on_edge=(~(inside_r & inside_c)).cpu().numpy(),
    )


def candidate_peaks(ncc: torch.Tensor, k: int = 3, exclude: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best distinct placements of each NCC map (each the maximum left after masking
    ``exclude`` px around the previous ones), with parabolic sub-pixel refinement.

    ``ncc``: ``(N, H, W)``. Returns shifts ``(N, k, 2)`` float32 (dy, dx) relative to the map centre
    and scores ``(N, k)`` float32 (-inf where a map has no k-th peak, or it lies on the map border).
    """
    n, h, w = ncc.shape
    work = ncc.clone()
    rows = torch.arange(h, device=ncc.device)[None, :, None]
    cols = torch.arange(w, device=ncc.device)[None, None, :]
    shifts = np.zeros((n, k, 2), np.float32)
    scores = np.full((n, k), -np.inf, np.float32)
    for j in range(k):
        best, idx = work.reshape(n, -1).max(dim=1)
        r, c = idx // w, idx % w
        shift, inside_r, inside_c = _subpixel_shift(ncc, r, c)
        ok = (inside_r & inside_c & torch.isfinite(best)).cpu().numpy()
        shifts[:, j] = shift.cpu().numpy()
        scores[:, j] = np.where(ok, best.cpu().numpy(), -np.inf)
        near = ((rows - r[:, None, None]).abs() <= exclude) & ((cols - c[:, None, None]).abs() <= exclude)
        work = work.masked_fill(near, -float("inf"))
    return shifts, scores


def ncc_maps(templates: np.ndarray, searches: np.ndarray, device: torch.device | str = "cpu",
             max_elements: int = 24_000_000, template_masks: np.ndarray | None = None,
             search_masks: np.ndarray | None = None, min_overlap: float = 0.5) -> np.ndarray:
    """NCC maps ``(N, S-t+1, S-t+1)`` float32 of every template ``(N, C, t, t)`` in its search
    window ``(N, C, S, S)``, computed in chunks of bounded size (see :func:`ncc_map`). With
    boolean ``template_masks`` ``(N, t, t)`` and ``search_masks`` ``(N, S, S)`` (valid pixels),
    templates or windows that have invalid pixels are scored by :func:`masked_ncc_map`."""
    n, c, t, _ = templates.shape
    s = searches.shape[-1]
    chunk = max(1, int(max_elements // max(1, c * s * s)))
    out = np.empty((n, s - t + 1, s - t + 1), np.float32)
    masked = np.zeros(n, bool)
    full_t = np.ones(n, bool)
    if template_masks is not None and search_masks is not None:
        full_t = template_masks.reshape(n, -1).all(axis=1)
        masked = ~(full_t & search_masks.reshape(n, -1).all(axis=1))

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device)

    def rows(a: np.ndarray, part: np.ndarray) -> np.ndarray:
        # a run of consecutive nodes is a view, not a copy (most chunks: nodes come in order)
        return a[part[0]:part[-1] + 1] if part[-1] - part[0] + 1 == len(part) else a[part]

    # Plain NCC where nothing is masked; masked NCC in two groups, so that chunks of full
    # templates (only the search side masked) take its cheaper path.
    for sel in (np.nonzero(~masked)[0], np.nonzero(masked & full_t)[0], np.nonzero(masked & ~full_t)[0]):
        for i in range(0, len(sel), chunk):
            part = sel[i:i + chunk]
            tt, ss = tensor(rows(templates, part)), tensor(rows(searches, part))
            if masked[part[0]]:
                maps = masked_ncc_map(tt, ss, tensor(rows(template_masks, part)[:, None]),
                                      tensor(rows(search_masks, part)[:, None]), min_overlap)
            else:
                maps = ncc_map(tt, ss)
            out[part] = maps.cpu().numpy()
    return out


def aggregate_maps(maps: np.ndarray, shifts: np.ndarray, radius: int, sigma: float) -> np.ndarray:
    """Pool each node's NCC map with its lattice neighbours' (weighted mean, Gaussian in nodes).

    ``maps``: ``(n_r, n_c, H, W)`` float32, NaN for nodes without a map; entry (i, j) of node
    (a, b) scores the absolute offset ``shifts[:, a, b] + (i, j)``. ``shifts``: int ``(2, n_r, n_c)``
    (each node's search-window origin). Neighbour maps are re-indexed onto the node's own offsets
    (entries they do not cover are missing), so pooled maps compare the same absolute offsets.
    Pooling sums evidence over a neighbourhood: repeated structures and layover give each node
    several similar peaks, but only the true offset (smooth across neighbours) adds up.
    Returns ``(n_r, n_c, H, W)``; NaN where the node itself has no map.
    """
    n_r, n_c, h, w = maps.shape
    num = np.zeros_like(maps, dtype=np.float32)
    den = np.zeros_like(maps, dtype=np.float32)
    ii = np.arange(h)[None, None, :, None]
    jj = np.arange(w)[None, None, None, :]
    for da in range(-radius, radius + 1):
        for db in range(-radius, radius + 1):
            wgt = float(np.exp(-(da * da + db * db) / (2 * sigma * sigma)))
            a2 = np.clip(np.arange(n_r) + da, 0, n_r - 1)[:, None, None, None]
            b2 = np.clip(np.arange(n_c) + db, 0, n_c - 1)[None, :, None, None]
            inside = ((np.arange(n_r) + da >= 0) & (np.arange(n_r) + da < n_r))[:, None, None, None] & \
                     ((np.arange(n_c) + db >= 0) & (np.arange(n_c) + db < n_c))[None, :, None, None]
            # Neighbour entry for my index i: i + (my shift - neighbour shift).
            d0 = (shifts[0][:, :, None, None] - shifts[0][a2[..., 0, 0], b2[..., 0, 0]][:, :, None, None])
            d1 = (shifts[1][:, :, None, None] - shifts[1][a2[..., 0, 0], b2[..., 0, 0]][:, :, None, None])
            i2, j2 = ii + d0, jj + d1
            ok = inside & (i2 >= 0) & (i2 < h) & (j2 >= 0) & (j2 < w)
            vals = maps[a2, b2, np.clip(i2, 0, h - 1), np.clip(j2, 0, w - 1)]
            ok = ok & np.isfinite(vals)
            num += np.where(ok, vals, 0.0) * wgt
            den += ok * np.float32(wgt)
    out = num / np.maximum(den, 1e-6)
    out[den <= 0] = -1.0
    out[~np.isfinite(maps[:, :, :1, :1]).all(axis=(2, 3))] = np.nan
    return out.astype(np.float32)


def match_templates(templates: np.ndarray, searches: np.ndarray, device: torch.device | str = "cpu",
                    max_elements: int = 24_000_000) -> MatchResult:
    """Match every template ``(N, C, t, t)`` in its search window ``(N, C, S, S)``, in chunks that
    keep each FFT batch under ``max_elements`` values (bounded memory, CPU or CUDA)."""
    n, c, _, _ = templates.shape
    s = searches.shape[-1]
    chunk = max(1, int(max_elements // max(1, c * s * s)))
    parts = []
    for i in range(0, n, chunk):
        tt = torch.from_numpy(np.ascontiguousarray(templates[i:i + chunk])).to(device)
        ss = torch.from_numpy(np.ascontiguousarray(searches[i:i + chunk])).to(device)
        parts.append(find_peaks(ncc_map(tt, ss)))
    if not parts:
        empty = np.zeros((0,), np.float32)
        return MatchResult(np.zeros((0, 2), np.float32), empty, empty, np.zeros((0,), bool))
    return MatchResult(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                         ("shift", "score", "ratio", "on_edge")))
