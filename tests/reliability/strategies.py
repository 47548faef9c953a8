"""Hypothesis strategies for fuzzing annotation files: random text and mutations of valid files."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Tokens that break parsers: signs, huge and non-finite numbers, separators, NUL,
# non-ASCII digits and letters, path pieces, brackets of MATLAB ranges.
NASTY_TOKENS = (
    "", " ", "  ", "\t", ",", ";", ":", "\n", "\r\n", "\r", "\x00", "-", "-1", "0", "1", "2", "7", "16", "3.5",
    "1e3", "1e400", "-1e400", "nan", "NaN", "inf", "-inf", "99999999999999999999999999", "-9223372036854775809",
    "9223372036854775807", "\u0661\u0662", "\uff11", "é", "\ufeff", "..", "/", "\\", "a", "label_A", "_label_B1",
    "[", "]", "1:5", "[1:5]", "gt_frame = [1:3];", "image_0001.jpg", "01_0014", "x" * 300,
)


@st.composite
def mutated_text(draw, seed: str) -> str:
    """``seed`` after a few random edits: token insertions, deletions, line shuffles."""
    text = seed
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(("insert", "delete", "replace", "dup_line", "drop_line", "swap_lines")))
        if op in ("insert", "replace", "delete") and text:
            i = draw(st.integers(0, len(text)))
            j = min(len(text), i + draw(st.integers(0, 8)))
            if op == "delete":
                text = text[:i] + text[j:]
            else:
                token = draw(st.one_of(st.sampled_from(NASTY_TOKENS), st.text(max_size=6)))
                text = text[:i] + token + (text[j:] if op == "replace" else text[i:])
        elif op == "insert":
            text = draw(st.sampled_from(NASTY_TOKENS))
        else:
            lines = text.split("\n")
            k = draw(st.integers(0, max(0, len(lines) - 1)))
            if op == "dup_line":
                lines.insert(k, lines[k])
            elif op == "drop_line" and len(lines) > 1:
                del lines[k]
            elif op == "swap_lines" and len(lines) > 1:
                m = draw(st.integers(0, len(lines) - 1))
                lines[k], lines[m] = lines[m], lines[k]
            text = "\n".join(lines)
    return text


def file_bytes(seed: str) -> st.SearchStrategy[bytes]:
    """What a fuzzed annotation file holds: a mutated valid file, random text, or random bytes."""
    return st.one_of(
        mutated_text(seed).map(lambda t: t.encode("utf-8", "surrogatepass")),
        mutated_text(seed).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.binary(max_size=200),
    )


def fuzz_settings(examples: int) -> settings:
    """Hypothesis settings of the fuzz tests: ``examples`` per test (``PATCHVAD_FUZZ_EXAMPLES`` overrides)."""
    return settings(max_examples=int(os.environ.get("PATCHVAD_FUZZ_EXAMPLES", examples)), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
