"""The power spectrum of fixed-length windows as a few small matrix products.

Why: exported models carry their front end, and onnxruntime's ``STFT`` op is
slow on the CPU (about 6.6 ms for a 3 s window here, against 0.5 ms for
torch's FFT). A direct DFT as one matrix product is no better: ~1 MMAC per
1024-sample frame, 2.5-4 ms for 151 frames at this machine's ~40-70 GMAC/s.
One Cooley-Tukey step, ``N = N1 x N2``, turns each frame's DFT into two
products with ``N1 x N1`` and ``2 N2 x 2 K2`` matrices (about 1/7 of the work)
that onnxruntime runs as ordinary batched ``MatMul``\\ s: 1.5 ms for the same
window; the input being real, the first of them needs only half its rows.
Frames are gathered as chunks of ``N2`` samples (``N2`` divides the hop), so
the graph holds no per-sample gather and no ``Conv`` with a 1024-wide kernel.

Only the frames asked for are computed, which lets a model that resizes its
time axis (AudioMAE reads ~256 of its 1001 frames) skip the rest exactly.

Numerically this is the same transform as ``torch.stft`` with the same
window (float32 rounding apart, ~1e-6 of the peak power); training keeps
torch's FFT, which is cheaper in torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

MIN_FACTOR = 4
"""Below this a factor saves too little over the direct product."""


def _split(n_fft: int, hop_length: int) -> tuple[int, int] | None:
    """``(N1, N2)`` with ``N1 * N2 = n_fft``, ``N2`` dividing the hop, closest to a square."""
    best = None
    for n2 in range(MIN_FACTOR, n_fft // MIN_FACTOR + 1):
        if n_fft % n2 or hop_length % n2:
            continue
        n1 = n_fft // n2
        if best is None or abs(math.log(n1 / n2)) < abs(math.log(best[0] / best[1])):
            best = (n1, n2)
    return best


def _chosen_frames(
    n_fft: int, hop_length: int, length: int, center: bool, frames: Sequence[int] | None
) -> list[int]:
    """The frame indices to compute (default: every frame of a ``length`` clip), checked."""
    padded = length + (n_fft if center else 0)
    total = 1 + (padded - n_fft) // hop_length
    chosen = list(range(total)) if frames is None else [int(f) for f in frames]
    if not chosen or min(chosen) < 0 or max(chosen) >= total:
        raise ValueError(f"frames must lie in 0..{total - 1}")
    return chosen


def _conjugate_pairs(n1: int) -> list[tuple[int, int | None]]:
    """First-stage bins computed together: ``(0, n1 / 2)`` (both real; ``(0, None)``
    for odd ``n1``), then ``(k1, n1 - k1)`` for ``0 < k1 < n1 / 2``."""
    pairs: list[tuple[int, int | None]] = [(0, n1 // 2 if n1 % 2 == 0 else None)]
    return pairs + [(k1, n1 - k1) for k1 in range(1, (n1 + 1) // 2)]


def _centred(x: torch.Tensor, n_fft: int, center: bool) -> torch.Tensor:
    """``x`` reflect-padded by ``n_fft // 2`` on each side, as ``torch.stft(center=True)``."""
    if not center:
        return x
    half = n_fft // 2
    return F.pad(x.unsqueeze(1), (half, half), mode="reflect").squeeze(1)


def _register(module: nn.Module, name: str, value: torch.Tensor) -> None:
    """A non-persistent buffer (float32 or int64): the bases are not saved with the weights."""
    dtype = torch.float32 if value.is_floating_point() else torch.long
    module.register_buffer(name, value.to(dtype).contiguous(), persistent=False)


class DirectPowerSpectrum(nn.Module):
    """``|STFT|^2`` of ``(B, length)`` clips at ``frames`` as one product with the
    windowed DFT basis: ``(B, len(frames), n_fft // 2 + 1)``.

    The fallback of :class:`WindowedMelPower` when the hop and ``n_fft`` share
    no factor to split the transform on. ``window``: the analysis window
    (``n_fft`` samples); ``center``: frames centred with reflect padding, as
    ``torch.stft(center=True)``; ``frames``: which frames to compute.
    """

    def __init__(
        self,
        window: torch.Tensor,
        *,
        hop_length: int,
        length: int,
        center: bool,
        frames: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        n_fft = int(window.shape[0])
        self.n_fft, self.hop_length, self.center = n_fft, int(hop_length), bool(center)
        chosen = _chosen_frames(n_fft, self.hop_length, length, self.center, frames)
        self.bins = n_fft // 2 + 1
        self.frames = len(chosen)
        k = torch.arange(self.bins, dtype=torch.float64).unsqueeze(1)
        n = torch.arange(self.n_fft, dtype=torch.float64).unsqueeze(0)
        angle = 2.0 * math.pi * k * n / self.n_fft
        w = window.to(torch.float64)
        basis = torch.cat([torch.cos(angle) * w, -torch.sin(angle) * w])  # (2 bins, n_fft)
        _register(self, "basis", basis.T)
        starts = torch.tensor(chosen) * self.hop_length
        _register(self, "sample_index", (starts[:, None] + torch.arange(self.n_fft)).flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        x = _centred(x, self.n_fft, self.center)
        framed = x.index_select(1, self.sample_index).reshape(batch, self.frames, self.n_fft)
        parts = torch.matmul(framed, self.basis)  # (B, F, 2 bins)
        re, im = parts[..., : self.bins], parts[..., self.bins :]
        return re * re + im * im


class WindowedMelPower(nn.Module):
    """Mel power ``(B, n_mels, len(frames))`` of ``(B, length)`` clips: the STFT
    as small matrix products, with the glue between them folded into the products.

    Why: in onnxruntime the element-wise steps between the small products
    (splitting real and imaginary parts, the twiddle factors, reordering
    bins) cost more than the products. Here the twiddles are folded into one
    second-stage matrix per first-stage bin (a batched product), the real and
    imaginary halves come from two first-stage products, and the mel
    filterbank is permuted to the factored bin order (and stacked for the
    real and imaginary squares), so the power spectrum is never reordered:
    about 35 % less time for the whole front end (docs/performance.md). The
    first stage runs on half its bins (the other half are their complex
    conjugates, folded into the second-stage matrices): the CNN's INT8 window
    ~0.77 -> ~0.71 ms in ``serenesense bench`` (docs/performance.md).
    Clips run inside the frame axis (``frames x B`` rows), so every product
    is one large batched ``MatMul``. Without a factorisation (the hop shares
    no factor with ``n_fft``) it is the direct product followed by the
    filterbank.
    """

    def __init__(
        self,
        window: torch.Tensor,
        filterbank: torch.Tensor,
        *,
        hop_length: int,
        length: int,
        center: bool,
        frames: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        n_fft = int(window.shape[0])
        self.n_fft, self.hop_length, self.center = n_fft, int(hop_length), bool(center)
        split = _split(n_fft, self.hop_length)
        self.direct: DirectPowerSpectrum | None = None
        if split is None:
            self.direct = DirectPowerSpectrum(
                window, hop_length=hop_length, length=length, center=center, frames=frames
            )
            self.frames = self.direct.frames
            _register(self, "filterbank", filterbank)
            return
        chosen = _chosen_frames(n_fft, self.hop_length, length, self.center, frames)
        self.frames = len(chosen)
        self._factored(window.to(torch.float64), filterbank.to(torch.float64), chosen, *split)

    def _factored(
        self, w: torch.Tensor, fb: torch.Tensor, chosen: list[int], n1: int, n2: int
    ) -> None:
        """Sample ``n = n2 * i1 + i2`` of a frame, bin ``k = k1 + n1 * k2``.

        The input is real, so the first stage's output at ``n1 - k1`` is the
        complex conjugate of its output at ``k1``: only the first half of the
        ``k1`` is computed, and each second-stage product serves a pair
        ``(k1, n1 - k1)``, the conjugation folded into its matrix. The two
        real outputs (``k1 = 0`` and, for even ``n1``, ``k1 = n1 / 2``) share
        one product, the second one in the imaginary row. That halves the
        first stage and leaves the other two as large as before.
        """
        self.n1, self.n2 = n1, n2
        k2_count = (self.n_fft // 2) // n1 + 1
        step = self.hop_length // n2
        # Chunk of frame f at position i1, ordered (i1, f): the first product then
        # runs over i1 for every frame and clip at once.
        chunks = torch.arange(n1)[:, None] + torch.tensor(chosen)[None, :] * step
        _register(self, "chunk_index", chunks.flatten())
        _register(self, "window", w.reshape(n1, 1, n2))
        pairs = _conjugate_pairs(n1)
        self.pairs = len(pairs)
        i1 = torch.arange(n1, dtype=torch.float64)
        i2 = torch.arange(n2, dtype=torch.float64)
        k2 = torch.arange(k2_count, dtype=torch.float64)

        def first_row(k1: int, imaginary: bool) -> torch.Tensor:
            angle = 2.0 * math.pi * k1 * i1 / n1
            return -torch.sin(angle) if imaginary else torch.cos(angle)

        def second(k1: int) -> tuple[torch.Tensor, torch.Tensor]:
            # exp(-2 pi i (k1 i2 / n_fft + i2 k2 / n2)): twiddle and second DFT in one.
            theta = 2.0 * math.pi * (k1 * i2[:, None] / self.n_fft + i2[:, None] * k2 / n2)
            return torch.cos(theta), -torch.sin(theta)  # (i2, k2)

        zeros = torch.zeros(n2, 2 * k2_count, dtype=torch.float64)
        first_re, first_im, second_re, second_im = [], [], [], []
        for low, high in pairs:
            e_re, e_im = second(low)
            # (re + i im) E = [re e_re - im e_im | re e_im + im e_re]: columns Re, Im.
            by_re, by_im = torch.cat([e_re, e_im], 1), torch.cat([-e_im, e_re], 1)
            first_re.append(first_row(low, False))
            if high is None:  # k1 = 0 alone (odd n1): no imaginary part, no partner
                first_im.append(torch.zeros(n1, dtype=torch.float64))
                by_re, by_im = torch.cat([by_re, zeros], 1), torch.cat([zeros, zeros], 1)
            elif low == 0:  # the two real outputs: k1 = n1 / 2 rides in the imaginary row
                first_im.append(first_row(high, False))
                h_re, h_im = second(high)
                by_im = torch.cat([zeros, torch.cat([h_re, h_im], 1)], 1)
                by_re = torch.cat([by_re, zeros], 1)
            else:  # k1 and its conjugate n1 - k1: (re - i im) E'
                first_im.append(first_row(low, True))
                h_re, h_im = second(high)
                by_re = torch.cat([by_re, torch.cat([h_re, h_im], 1)], 1)
                by_im = torch.cat([by_im, torch.cat([h_im, -h_re], 1)], 1)
            second_re.append(by_re)
            second_im.append(by_im)
        # first: (pairs, i1); second: (pairs, i2, [low, high] x [Re, Im] x k2)
        _register(self, "first_re", torch.stack(first_re))
        _register(self, "first_im", torch.stack(first_im))
        _register(self, "second_re", torch.stack(second_re))
        _register(self, "second_im", torch.stack(second_im))
        # Mel weights in the same order: pair, partner, Re/Im, k2 (zero where no bin).
        bins = self.n_fft // 2 + 1
        rows = []
        for pair in pairs:
            for k1 in pair:
                k = (k1 if k1 is not None else 0) + n1 * k2.long()
                valid = (k < bins) & (k1 is not None)
                weights = fb[k.clamp(max=bins - 1)] * valid[:, None].to(torch.float64)
                rows += [weights, weights]  # Re^2 and Im^2 of the same bin
        _register(self, "mel_rows", torch.cat(rows))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.direct is not None:
            return torch.matmul(self.direct(x), self.filterbank).transpose(1, 2)
        batch = x.shape[0]
        x = _centred(x, self.n_fft, self.center)
        usable = (x.shape[1] // self.n2) * self.n2
        chunks = x[:, :usable].reshape(batch, usable // self.n2, self.n2).transpose(0, 1)
        rows = self.frames * batch  # frame-major: row f * B + b
        framed = chunks.index_select(0, self.chunk_index).reshape(self.n1, rows, self.n2)
        framed = (framed * self.window).reshape(self.n1, rows * self.n2)
        a_re = torch.matmul(self.first_re, framed).reshape(self.pairs, rows, self.n2)
        a_im = torch.matmul(self.first_im, framed).reshape(self.pairs, rows, self.n2)
        z = torch.matmul(a_re, self.second_re) + torch.matmul(a_im, self.second_im)
        squares = (z * z).transpose(0, 1).reshape(rows, -1)  # (rows, pair x partner x Re/Im x k2)
        mel = torch.matmul(squares, self.mel_rows)
        return mel.reshape(self.frames, batch, -1).permute(1, 2, 0)
