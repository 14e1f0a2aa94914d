"""Per-epoch progress bars: a thin wrapper around tqdm with a plain-print fallback.

    with EpochProgress(num_samples, epoch=1, epochs=10) as bar:
        for xb, yb in loader:
            loss, correct = step(xb, yb)
            bar.update(len(yb), loss=loss, correct=correct)
    summary = bar.summary        # {"loss", "accuracy", "samples", "seconds", "samples_per_s"}

The bar shows the running mean loss (weighted by batch size), the running accuracy
100 * correct / samples and the throughput in samples per second. Without tqdm (or with
use_tqdm=False) one line per epoch is printed when the epoch closes; disable=True prints
nothing. Output goes to stderr unless `file` is given.
"""
from __future__ import annotations

import sys
import time
from typing import IO, Any, Dict, Optional

__all__ = ["EpochProgress", "has_tqdm"]


def has_tqdm() -> bool:
    """True when the tqdm package can be imported."""
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


class EpochProgress:
    """Progress of one epoch over `total` samples (see the module docstring).

    Parameters: total samples expected; epoch/epochs for the label (epochs may be None);
    desc overrides the label; use_tqdm None (= when installed), True or False; disable
    silences all output (the summary is still computed); file is the output stream.
    """

    def __init__(self, total: int, *, epoch: Optional[int] = None, epochs: Optional[int] = None,
                 desc: Optional[str] = None, use_tqdm: Optional[bool] = None, disable: bool = False,
                 file: Optional[IO[str]] = None, leave: bool = True):
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise ValueError(f"[fnl.progress] total must be an int >= 0, got {total!r}")
        self.total = total
        if desc is None:
            if epoch is None:
                desc = "train"
            elif epochs is None:
                desc = f"epoch {epoch}"
            else:
                desc = f"epoch {epoch}/{epochs}"
        self.desc = desc
        self.file = file if file is not None else sys.stderr
        self.disable = bool(disable)
        self.samples = 0
        self._loss_sum = 0.0
        self._loss_samples = 0
        self._correct = 0
        self._acc_samples = 0
        self._start = time.perf_counter()
        self._end: Optional[float] = None
        self._extra: Dict[str, Any] = {}
        self._bar = None
        if use_tqdm is None:
            use_tqdm = has_tqdm()
        if use_tqdm and not self.disable:
            from tqdm import tqdm
            self._bar = tqdm(total=total, desc=desc, unit="img", unit_scale=total >= 10000, file=self.file,
                             leave=leave, dynamic_ncols=True)

    # -- statistics ----------------------------------------------------------------------
    @property
    def loss(self) -> float:
        return self._loss_sum / self._loss_samples if self._loss_samples else float("nan")

    @property
    def accuracy(self) -> float:
        """Running accuracy in percent."""
        return 100.0 * self._correct / self._acc_samples if self._acc_samples else float("nan")

    @property
    def seconds(self) -> float:
        return (self._end if self._end is not None else time.perf_counter()) - self._start

    @property
    def samples_per_s(self) -> float:
        s = self.seconds
        return self.samples / s if s > 0 else float("nan")

    @property
    def summary(self) -> Dict[str, Any]:
        out = {"loss": self.loss, "accuracy": self.accuracy, "samples": self.samples,
               "seconds": self.seconds, "samples_per_s": self.samples_per_s}
        out.update(self._extra)
        return out

    def _postfix(self) -> Dict[str, str]:
        post = {"loss": f"{self.loss:.4f}", "acc": f"{self.accuracy:.2f}%"}
        post.update({k: (f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in self._extra.items()})
        return post

    # -- updates -------------------------------------------------------------------------
    def update(self, n: int, *, loss: Optional[float] = None, correct: Optional[int] = None,
               **extra: Any) -> None:
        """Record a batch of n samples with its mean loss and number of correct predictions;
        extra keyword values (e.g. lr=0.1) are shown as they are and kept in the summary."""
        n = int(n)
        self.samples += n
        if loss is not None:
            self._loss_sum += float(loss) * n
            self._loss_samples += n
        if correct is not None:
            self._correct += int(correct)
            self._acc_samples += n
        self._extra.update(extra)
        if self._bar is not None:
            self._bar.set_postfix(self._postfix(), refresh=False)
            self._bar.update(n)

    def set(self, **values: Any) -> None:
        """Show extra values (e.g. test accuracy at the end of the epoch) and keep them in the
        summary."""
        self._extra.update(values)
        if self._bar is not None:
            self._bar.set_postfix(self._postfix())

    def close(self) -> Dict[str, Any]:
        """Finish the epoch (idempotent); returns the summary."""
        if self._end is None:
            self._end = time.perf_counter()
            if self._bar is not None:
                self._bar.set_postfix(self._postfix())
                self._bar.close()
            elif not self.disable:
                extra = "".join(f" {k} {v:.4g}" if isinstance(v, float) else f" {k} {v}"
                                for k, v in self._extra.items())
                print(f"{self.desc}: loss {self.loss:.4f} acc {self.accuracy:.2f}% "
                      f"{self.samples_per_s:.0f} samples/s {self.seconds:.1f}s{extra}",
                      file=self.file, flush=True)
        return self.summary

    def __enter__(self) -> "EpochProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
