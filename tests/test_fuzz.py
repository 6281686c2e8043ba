"""Fuzz the profile loader and the session-log reader: no input gives a traceback.

A few thousand examples here (about 20 s); ``python -m benchmarks.fuzz_profiles`` runs
100,000 and more with per-input time and memory bounds. See tests/fuzz_inputs.py.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings

from tests.fuzz_inputs import (
    check_profile_text,
    check_session_log,
    grammar_profiles,
    mutated_profiles,
    session_logs,
)

pytestmark = pytest.mark.timeout(120)

FUZZ = settings(max_examples=1500, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@settings(FUZZ, max_examples=1000)
@given(grammar_profiles())
@example("name: 1.5 mph\ndescription: 1.5 mph\n<<: {a: 1}\n")  # found by the big fuzz
@example('name: 1.5 mph\nunits: "\\ud800"\n')  # found by the big fuzz
def test_fuzz_profile_from_the_grammar(text: str) -> None:
    check_profile_text(text)


@FUZZ
@given(mutated_profiles())
def test_fuzz_profile_mutations_of_real_files(text: str) -> None:
    check_profile_text(text)


_LOG_DIR = Path(tempfile.mkdtemp(prefix="retrotread-fuzz-"))


@settings(FUZZ, max_examples=1000)
@given(session_logs())
def test_fuzz_session_log_reader(data: bytes) -> None:
    check_session_log(_LOG_DIR / "session.jsonl", data)
