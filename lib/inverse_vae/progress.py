"""Progress that suits where the code runs: a live bar for a person, one line for a saved notebook.

    for epoch in progress(range(1, 91), desc="epochs"):
        ...

In a terminal, or in a notebook someone runs in JupyterLab, it is a live tqdm bar. In a notebook
executed headlessly (papermill via the runner, nbval, nbclient) or with the output piped to a
file, nothing is printed per step, only one summary line when the loop ends, so an executed
notebook keeps one line where a bar would have saved one line per refresh:

    epochs: 90/90 in 272.1 s (train=0.16862, val=0.16863)

Headless is decided once per call, in this order: INVERSE_VAE_BATCH in the environment (the
runner sets it to 1 around papermill; the kernel inherits it; "0" or empty forces the bar); an
IPython kernel without JPY_SESSION_NAME (which Jupyter's server sets for the kernels it starts,
papermill and nbclient never do); otherwise, stderr not being a terminal.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator

BATCH_ENV = "INVERSE_VAE_BATCH"


def _in_kernel() -> bool:
    """True inside an IPython kernel (a notebook), whoever started it."""
    shell = sys.modules.get("IPython")
    if shell is None or "ipykernel" not in sys.modules:
        return False
    try:
        ip = shell.get_ipython()
    except AttributeError:
        return False
    return ip is not None and hasattr(ip, "kernel")


def headless() -> bool:
    """True when no person watches this output live (see the module's docstring for the rules)."""
    flag = os.environ.get(BATCH_ENV)
    if flag is not None:
        return flag.strip() not in ("", "0")
    if _in_kernel():
        return not os.environ.get("JPY_SESSION_NAME")
    try:
        return not sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return True


def _format_postfix(postfix: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in postfix.items())


class Progress:
    """Iterates `iterable`; set_postfix(**values) shows the latest values (on the bar, or in the
    summary line); close() ends it (done on exhausting the iterator too). `enabled=False` prints
    nothing at all."""

    def __init__(self, iterable: Iterable, *, total: int | None = None, desc: str = "", initial: int = 0,
                 enabled: bool = True, batch: bool | None = None, file=None):
        self.iterable, self.desc, self.count, self.postfix = iterable, desc, 0, {}
        self.total, self.initial = total, initial
        self.enabled = enabled
        self.batch = headless() if batch is None else batch
        self.file = file
        self.started = time.perf_counter()
        self._closed = False
        self._bar = None
        if enabled and not self.batch:
            from tqdm import tqdm

            self._bar = tqdm(iterable, total=total, desc=desc, initial=initial, leave=True,
                             file=file or sys.stderr, dynamic_ncols=True)

    def __iter__(self) -> Iterator:
        source = self._bar if self._bar is not None else self.iterable
        for item in source:
            self.count += 1
            yield item
        self.close()

    def set_postfix(self, **values) -> None:
        self.postfix = values
        if self._bar is not None:
            self._bar.set_postfix(values)

    def summary(self) -> str:
        """The one line a headless run prints: desc, items done, seconds, the last postfix."""
        head = f"{self.desc}: " if self.desc else ""
        done = f"{self.initial + self.count}/{self.total}" if self.total is not None else f"{self.count}"
        if self.initial:
            done += f" ({self.count} now)"
        line = f"{head}{done} in {time.perf_counter() - self.started:.1f} s"
        return f"{line} ({_format_postfix(self.postfix)})" if self.postfix else line

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.enabled:
            print(self.summary(), file=self.file or sys.stdout, flush=True)


def progress(iterable: Iterable, *, total: int | None = None, desc: str = "", initial: int = 0,
             enabled: bool = True, batch: bool | None = None, file=None) -> Progress:
    """Wrap `iterable` in a progress display that suits where the code runs (see the module).

    total/initial as tqdm's (the bar of a resumed loop starts at `initial` of `total`); `enabled`
    False prints nothing; `batch` True/False forces the summary line/the bar (None: decide);
    `file` is where it writes (default: the bar to stderr, the summary line to stdout).
    """
    return Progress(iterable, total=total, desc=desc, initial=initial, enabled=enabled, batch=batch, file=file)
