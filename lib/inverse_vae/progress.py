"""Progress that suits where the code runs: tqdm.auto's live bar for a person (a widget in JupyterLab, text in a
terminal), one line for a saved notebook.

A notebook executed headlessly (papermill via the runner, nbval, nbclient) or output piped to a file prints
nothing per step, only one summary line when the loop ends, where a bar would have saved one line per refresh:

    epochs: 90/90 in 272.1 s (train=0.16862, val=0.16863)
"""
from __future__ import annotations

import io
import math
import os
import sys
import time
from collections.abc import Iterable

from tqdm import auto, std

BATCH_ENV = "INVERSE_VAE_BATCH"


def _in_kernel() -> bool:
    """True inside an IPython kernel (a notebook), whoever started it."""
    ipython = sys.modules.get("IPython")
    if ipython is None or "ipykernel" not in sys.modules:
        return False
    return hasattr(ipython.get_ipython(), "kernel")


def headless() -> bool:
    """True when no person watches this output live. Decided in this order: INVERSE_VAE_BATCH (the runner
    sets it to 1 around papermill, the kernel inherits it; "0" or empty forces the bar); an IPython kernel
    without JPY_SESSION_NAME (Jupyter's server sets it for the kernels it starts, papermill and nbclient
    never do); otherwise, stderr not being a terminal."""
    flag = os.environ.get(BATCH_ENV)
    if flag is not None:
        return flag.strip() not in ("", "0")
    if _in_kernel():
        return not os.environ.get("JPY_SESSION_NAME")
    try:
        return not sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return True


def progress(iterable: Iterable, *, total: int | None = None, desc: str = "", initial: int = 0,
             enabled: bool = True) -> std.tqdm:
    """A tqdm over `iterable`: set_postfix(**values) shows the latest values, close() ends it (so does exhausting
    it); total/initial as tqdm's (a resumed loop starts at `initial` of `total`); `enabled` False shows nothing."""
    if enabled and headless():
        return _Summary(iterable, total=total, desc=desc, initial=initial)
    return auto.tqdm(iterable, total=total, desc=desc, initial=initial, disable=not enabled, dynamic_ncols=True)


class _Summary(std.tqdm):
    """A tqdm that counts out of sight and, closed, prints one line on stdout: `desc: n/total in s (postfix)`."""

    monitor_interval = 0  # nothing is shown, nothing to refresh

    def __init__(self, iterable: Iterable, *, total: int | None, desc: str, initial: int):
        self.given_total = total  # tqdm takes len(iterable) for a missing total; the line then shows a count
        super().__init__(iterable, total=total, desc=desc, initial=initial, file=io.StringIO(), mininterval=math.inf)

    def close(self) -> None:
        if not self.disable:  # tqdm disables a bar it closes: one line, however often close is called
            count = self.n - self.initial
            done = f"{self.n}/{self.given_total}" if self.given_total is not None else f"{count}"
            done += f" ({count} now)" if self.initial else ""
            line = f"{self.desc}: " if self.desc else ""
            line += f"{done} in {time.time() - self.start_t:.1f} s" + (f" ({self.postfix})" if self.postfix else "")
            print(line, flush=True)
        super().close()
