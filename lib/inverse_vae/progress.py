"""Progress that suits where the code runs: a live tqdm bar for a person, one line for a saved notebook.

A notebook executed headlessly (papermill via the runner, nbval, nbclient) or output piped to a file prints
nothing per step, only one summary line when the loop ends, where a bar would have saved one line per refresh:

    epochs: 90/90 in 272.1 s (train=0.16862, val=0.16863)
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator

from tqdm import tqdm

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


class Progress:
    """Iterates `iterable` behind a bar (on stderr) or, headless, one summary line (on stdout) when it ends;
    set_postfix(**values) shows the latest values; close() ends it (done on exhausting the iterator too).
    total/initial as tqdm's (a resumed loop starts at `initial` of `total`); `enabled` False prints nothing."""

    def __init__(self, iterable: Iterable, *, total: int | None = None, desc: str = "", initial: int = 0,
                 enabled: bool = True):
        self.iterable, self.total, self.desc, self.initial, self.enabled = iterable, total, desc, initial, enabled
        self.count, self.postfix, self.started, self.closed = 0, {}, time.perf_counter(), False
        live = enabled and not headless()
        self.bar = tqdm(iterable, total=total, desc=desc, initial=initial, dynamic_ncols=True) if live else None

    def __iter__(self) -> Iterator:
        for item in self.iterable if self.bar is None else self.bar:
            self.count += 1
            yield item
        self.close()

    def set_postfix(self, **values) -> None:
        self.postfix = values
        if self.bar is not None:
            self.bar.set_postfix(values)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()  # tqdm's close may be called again
        elif self.enabled and not self.closed:
            done = f"{self.initial + self.count}/{self.total}" if self.total is not None else f"{self.count}"
            done += f" ({self.count} now)" if self.initial else ""
            line = f"{self.desc}: " if self.desc else ""
            line += f"{done} in {time.perf_counter() - self.started:.1f} s"
            line += f" ({', '.join(f'{k}={v}' for k, v in self.postfix.items())})" if self.postfix else ""
            print(line, flush=True)
        self.closed = True


progress = Progress  # the name the study calls: `for epoch in progress(range(1, 91), desc="epochs"):`
