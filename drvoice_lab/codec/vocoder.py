"""Streaming Griffin-Lim: linear magnitude frames -> waveform, one token at a time (RTISI-LA).

The project's own vocoder: torchaudio and librosa are not dependencies, and this one streams
with a bounded look-ahead and gives the same samples whatever the chunking, which the codec's
streaming decode relies on.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from drvoice_lab.codec.features import hann


class StreamingGriffinLim:
    """Magnitude frames -> waveform, one token (``block`` frames) at a time (RTISI-LA).

    Before a block of frames is committed, it and ``lookahead`` further frames get ``iters``
    fast Griffin-Lim iterations (momentum) against the already committed signal; a frame
    entering the look-ahead starts from the phase of the partial reconstruction. The steps
    happen in the same order whatever the push sizes, so the output never depends on how the
    frames arrive, and a sample depends only on past frames and ``block + lookahead`` ahead.

    Buffers are indexed by sample + n_fft // 2, so frame f's window starts at f * hop.
    """

    def __init__(
        self, n_fft: int, hop: int, block: int, lookahead: int, iters: int, momentum: float = 0.0
    ):
        self.n_fft, self.hop, self.block = n_fft, hop, block
        self.lookahead, self.iters, self.momentum = lookahead, iters, momentum
        self.window = hann(n_fft)
        self.overlap = -(-n_fft // hop) - 1  # frames on each side whose windows overlap
        self.mag = np.zeros((0, n_fft // 2 + 1))  # (frames, bins): every frame pushed so far
        self.phase = np.zeros((0, n_fft // 2 + 1), dtype=np.complex128)  # unit phasors
        self.num = np.zeros(n_fft)  # overlap-add of the committed frames
        self.den = np.zeros(n_fft)  # window sum of squares of all pushed frames
        self.started = 0  # frames that have an initial phase
        self.committed = 0  # frames added to ``num``
        self.emitted = 0  # samples returned
        self._dens: dict[tuple[int, int], np.ndarray] = {}  # local window sums, by geometry

    def push(self, mag: np.ndarray, final: bool = False) -> np.ndarray:
        """Add (frames, bins) magnitudes; return the samples no later frame can change."""
        self._append(np.asarray(mag, dtype=np.float64))
        total = len(self.mag)
        while self.committed < total:
            end = min(self.committed + self.block, total)
            if end + self.lookahead > total and not final:
                break
            self._commit(self.committed, end)
        done = total * self.hop if final else self.committed * self.hop - self.n_fft // 2
        return self._emit(max(done, self.emitted))

    def _append(self, mag: np.ndarray) -> None:
        start = len(self.mag)
        self.mag = np.concatenate([self.mag, mag])
        self.phase = np.concatenate([self.phase, np.zeros(mag.shape, dtype=np.complex128)])
        size = len(self.mag) * self.hop + self.n_fft
        self.num = np.pad(self.num, (0, size - len(self.num)))
        self.den = np.pad(self.den, (0, size - len(self.den)))
        for f in range(start, len(self.mag)):
            self.den[f * self.hop : f * self.hop + self.n_fft] += self.window**2

    def _commit(self, a: int, b: int) -> None:
        """Start new look-ahead frames, iterate frames a .. b+lookahead, commit a .. b-1."""
        c = min(b + self.lookahead, len(self.mag))
        if self.started < c:  # phase of the partial reconstruction (zero where there is none)
            spec = self._projector(self.started, c)()
            mag = np.abs(spec)
            self.phase[self.started : c] = np.where(mag > 1e-9, spec / np.maximum(mag, 1e-9), 1)
            self.started = c
        project, previous = self._projector(a, c), None
        for _ in range(self.iters):
            spec = project()  # (c - a, bins)
            if self.momentum and previous is not None:
                spec, previous = spec + self.momentum * (spec - previous), spec
            else:
                previous = spec
            self.phase[a:c] = spec / np.maximum(np.abs(spec), 1e-9)
        frames = self._synth(a, b)  # (b - a, n_fft)
        for i, f in enumerate(range(a, b)):
            self.num[f * self.hop : f * self.hop + self.n_fft] += frames[i]
        self.committed = b

    def _projector(self, a: int, c: int) -> Callable[[], np.ndarray]:
        """A function giving the spectra (c - a, bins) of frames a .. c-1 of the current
        estimate: committed frames + started frames below c, over their window sum of squares."""
        live = max(a - self.overlap, self.committed)  # first frame not yet in num
        start, stop = live * self.hop, (c - 1) * self.hop + self.n_fft  # samples covered
        offsets = np.arange(self.n_fft)
        ola_index = ((np.arange(live, c) - live) * self.hop)[:, None] + offsets  # (c-live, n_fft)
        frame_index = ((np.arange(a, c) - live) * self.hop)[:, None] + offsets  # (c-a, n_fft)
        weight = self.window / np.maximum(self._local_den(live, c)[frame_index], 1e-8)
        base = self.num[start:stop][frame_index] * weight  # committed part of each frame

        def project() -> np.ndarray:
            ola = np.bincount(ola_index.ravel(), self._synth(live, c).ravel(), stop - start)
            return np.fft.rfft(ola[frame_index] * weight + base, axis=-1)

        return project

    def _local_den(self, live: int, c: int) -> np.ndarray:
        """Window sum of squares over samples live*hop .. of frames up to c-1 only."""
        first = max(live - self.overlap, 0)
        key = (live - first, c - live)
        if key not in self._dens:
            den = np.zeros((c - first - 1) * self.hop + self.n_fft)
            for f in range(c - first):
                den[f * self.hop : f * self.hop + self.n_fft] += self.window**2
            self._dens[key] = den[(live - first) * self.hop :]
        return self._dens[key]

    def _synth(self, a: int, b: int) -> np.ndarray:
        """(b - a, n_fft) windowed time frames from magnitudes and current phases."""
        return np.fft.irfft(self.mag[a:b] * self.phase[a:b], n=self.n_fft, axis=-1) * self.window

    def _emit(self, upto: int) -> np.ndarray:
        span = slice(self.emitted + self.n_fft // 2, upto + self.n_fft // 2)
        out = self.num[span] / np.maximum(self.den[span], 1e-8)
        self.emitted = upto
        return out.astype(np.float32)
