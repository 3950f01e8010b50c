"""The study's sentences, in one place: each is a macro of sentences.md.j2, and a module passes its numbers to
say(macro, ...) and gets the text. In the template, as in Markdown, a line break inside a sentence is a space."""
from __future__ import annotations

import functools
import re
from pathlib import Path

import jinja2


def pct(value) -> str:
    """A fraction as the answer quotes it: two decimals under 1% (0.03% is not 0.0%), else one; a dash for none."""
    return "—" if value is None or value != value else f"{value:.2%}" if 0 < value < 0.01 else f"{value:.1%}"


def _interval(bounds) -> str:
    return f"({bounds[0]:g}, {bounds[1]:g})"


@functools.cache
def _macros():
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # Markdown out, not HTML
    env.filters.update(f=format, pct=pct, interval=_interval)  # f: any format spec, as an f-string writes it
    source = Path(__file__).with_name("sentences.md.j2").read_text(encoding="utf-8")
    return env.from_string(re.sub(r"\n[ \t]*", " ", source)).module


def say(sentence: str, **values) -> str:
    """The template's macro `sentence` filled with `values` (a missing one is an error, never a blank)."""
    return str(getattr(_macros(), sentence)(**values))
