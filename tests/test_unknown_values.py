"""An unknown value stays unknown downstream: in the session log, its summary and every
export (never 0). Unknown comes from a field the machine did not send, or sent as "Data
Not Available" (docs/ftms.md)."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

from retrotread.events import Direction, TelemetrySample
from retrotread.export import build_activity, export_csv, export_fit, export_tcx
from retrotread.history import read_log
from retrotread.recorder import format_summary, summarize
from tests.test_export import decode_fit
from tests.test_history import _synthetic
from tests.test_recorder import workout_events, write_log

TCX = "{http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2}"


def unknown_samples() -> list[dict[str, object]]:
    """Telemetry whose speed, distance and heart rate are unknown every other second."""
    return [
        {"type": "telemetry", "t": 20.0 + i, "speed_kmh": None if i % 2 else 1.8,
         "distance_m": None if i % 2 else 100 + i, "elapsed_s": i,
         "heart_rate_bpm": None if i % 2 else 100, "target_kmh": 1.8, "facing": "backward"}
        for i in range(10)
    ]


def test_the_log_writes_unknown_as_null(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    events = workout_events()
    events.insert(7, TelemetrySample(5.0, None, None, None, None, 3.2, Direction.FORWARD))
    write_log(path, events)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    unknown = next(r for r in rows if r["type"] == "telemetry" and r["t"] == 5.0)
    assert unknown["speed_kmh"] is None
    assert unknown["heart_rate_bpm"] is None
    assert unknown["distance_m"] is None
    ((_, records),) = read_log(path)
    assert summarize(records).mean_speed_kmh is not None  # the known samples still count


def test_a_log_with_no_known_speed_has_no_mean_speed() -> None:
    # heart rate 0 is what a machine without a sensor sends (a real UREVO E1L capture)
    records = _synthetic(*[
        {"type": "telemetry", "t": 20.0 + i, "speed_kmh": None, "distance_m": None,
         "elapsed_s": i, "heart_rate_bpm": None if i % 2 else 0, "target_kmh": 1.8,
         "facing": "backward"}
        for i in range(10)])
    summary = summarize(records)
    assert summary.mean_speed_kmh is None
    assert summary.max_heart_rate_bpm is None
    text = format_summary(summary)
    assert "mean moving speed" not in text  # not "0.0 mph"
    assert "bpm" not in text


def test_csv_leaves_unknown_cells_empty() -> None:
    rows = list(csv.DictReader(io.StringIO(export_csv(build_activity(
        _synthetic(*unknown_samples()))))))
    odd = rows[1::2]
    assert odd and all(r["speed_kmh"] == "" and r["speed_mph"] == "" for r in odd)
    assert all(r["heart_rate_bpm"] == "" and r["distance_m"] == "" for r in odd)
    assert all(float(r["speed_kmh"]) == 1.8 for r in rows[0::2])


def test_tcx_omits_unknown_values() -> None:
    root = ET.fromstring(export_tcx(build_activity(_synthetic(*unknown_samples()))))
    points = list(root.iter(f"{TCX}Trackpoint"))
    assert len(points) == 10
    for i, point in enumerate(points):
        has_hr = point.find(f"{TCX}HeartRateBpm") is not None
        has_distance = point.find(f"{TCX}DistanceMeters") is not None
        has_speed = any(el.tag.endswith("Speed") for el in point.iter())
        assert has_hr == has_distance == has_speed == (i % 2 == 0), i


def test_fit_records_leave_unknown_fields_invalid() -> None:
    fit = decode_fit(export_fit(build_activity(_synthetic(*unknown_samples()))))
    records = fit["record"]
    assert len(records) == 10
    for i, record in enumerate(records):
        if i % 2:
            assert record.get("speed") is None, record
            assert record.get("heart_rate") is None, record
        else:
            assert record["speed"] == 0.5  # 1.8 km/h in m/s
            assert record["heart_rate"] == 100
