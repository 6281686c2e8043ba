"""`retrotread export`: FIT read back with an independent decoder (fitdecode), TCX parsed
back and checked against the TCX v2 structure, CSV read back."""

from __future__ import annotations

import csv
import datetime
import io
import itertools
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import fitdecode
import pytest
from garmin_fit_sdk import Decoder, Stream

from retrotread.cli import main
from retrotread.export import (
    ExportError,
    build_activity,
    export_csv,
    export_fit,
    export_session,
    export_tcx,
)
from retrotread.history import read_log
from retrotread.recorder import read_session, summarize
from tests.test_history import _synthetic, log_dir, real_logs  # noqa: F401 (fixtures)

Records = list[dict[str, Any]]


def decode_fit(data: bytes) -> dict[str, list[dict[str, Any]]]:
    """Every data message by name, each as {field name: value}; the CRCs are checked."""
    messages: dict[str, list[dict[str, Any]]] = {}
    with fitdecode.FitReader(io.BytesIO(data), check_crc=fitdecode.CrcCheck.RAISE) as reader:
        for frame in reader:
            if frame.frame_type == fitdecode.FIT_FRAME_DATA:
                messages.setdefault(frame.name, []).append(
                    {f.name: f.value for f in frame.fields})
    return messages


def records_of(path: Path) -> Records:
    # The raw JSON records (read_log now gives typed events): these tests compare the
    # export with what the log says, field by field; build_activity takes either.
    records = read_session(path)
    assert len(read_log(path)) == 1
    return records


@pytest.fixture
def completed(real_logs: dict[str, Path]) -> Records:  # noqa: F811
    return records_of(real_logs["first"])


@pytest.fixture
def stopped(real_logs: dict[str, Path]) -> Records:  # noqa: F811
    return records_of(real_logs["fault"])


def _rel_times(records: Records, kind: str) -> list[float]:
    t0 = next(r["t"] for r in records if r["type"] == "session_started")
    return [r["t"] - t0 for r in records if r["type"] == kind]


# ------------------------------------------------------------------ FIT


def test_fit_of_a_real_session_reads_back(completed: Records) -> None:
    data = export_fit(build_activity(completed))
    assert data[8:12] == b".FIT"
    fit = decode_fit(data)
    (file_id,) = fit["file_id"]
    assert file_id["type"] == "activity"
    (session,) = fit["session"]
    assert session["sport"] == "walking"
    assert session["sub_sport"] == "treadmill"
    (activity,) = fit["activity"]
    assert activity["num_sessions"] == 1

    # One lap per segment, starting where the segments started.
    segment_starts = _rel_times(completed, "segment_started")
    laps = fit["lap"]
    assert len(laps) == len(segment_starts) == 8
    assert session["num_laps"] == 8
    assert [lap["message_index"] for lap in laps] == list(range(8))
    start = session["start_time"]
    for lap, seg_t in zip(laps[1:], segment_starts[1:], strict=True):
        offset = (lap["start_time"] - start).total_seconds()
        assert abs(offset - seg_t) <= 1.0
    assert laps[0]["start_time"] == start
    for a, b in itertools.pairwise(laps):
        assert a["timestamp"] <= b["start_time"] + datetime.timedelta(seconds=1)

    # Totals agree with each other and with the log.
    summary = summarize(completed)
    assert sum(lap["total_distance"] for lap in laps) == pytest.approx(session["total_distance"])
    assert session["total_distance"] == pytest.approx(summary.distance_m, abs=2)
    assert sum(lap["total_elapsed_time"] for lap in laps) == pytest.approx(
        session["total_elapsed_time"], abs=0.01)
    assert session["total_elapsed_time"] == pytest.approx(summary.elapsed_s, abs=1)
    assert activity["total_timer_time"] == pytest.approx(session["total_timer_time"])

    # Records: one per telemetry second, speeds and distance as logged.
    telemetry = [r for r in completed if r["type"] == "telemetry"]
    records = fit["record"]
    assert len(records) == len(telemetry)  # 1 Hz telemetry: one sample per second
    for fit_record, sample in zip(records, telemetry, strict=True):
        assert fit_record["speed"] * 3.6 == pytest.approx(sample["speed_kmh"], abs=0.005)
    distances = [r["distance"] for r in records]
    assert distances == sorted(distances)
    assert distances[-1] == pytest.approx(session["total_distance"])
    assert session["max_speed"] * 3.6 == pytest.approx(
        max(s["speed_kmh"] for s in telemetry), abs=0.005)
    backward_laps = [lap for lap, r in zip(laps, [r for r in completed
                                                  if r["type"] == "segment_started"],
                                           strict=True) if r["direction"] == "backward"]
    assert len(backward_laps) == 3
    for lap in backward_laps:
        assert lap["max_speed"] * 3.6 < 3.21 + 0.3  # backward bouts stay slow
    # Timestamps are in order and inside the session.
    stamps = [r["timestamp"] for r in records]
    assert stamps == sorted(stamps)
    assert stamps[0] >= start and stamps[-1] <= session["timestamp"]


def test_fit_of_a_session_stopped_by_the_watchdog(stopped: Records) -> None:
    fit = decode_fit(export_fit(build_activity(stopped), sport="running"))
    (session,) = fit["session"]
    assert session["sport"] == "running" and session["sub_sport"] == "treadmill"
    segments = [r for r in stopped if r["type"] == "segment_started"]
    assert len(fit["lap"]) == len(segments) == session["num_laps"] == 2
    assert fit["lap"][-1]["lap_trigger"] == "session_end"
    assert session["total_elapsed_time"] == pytest.approx(summarize(stopped).elapsed_s, abs=1)


def test_fit_carries_heart_rate() -> None:
    records = _synthetic(*[
        {"type": "telemetry", "t": 10.0 + i, "speed_kmh": 1.8, "distance_m": 100 + i // 2,
         "elapsed_s": i, "heart_rate_bpm": 100 + i, "target_kmh": 1.8, "facing": "backward"}
        for i in range(20)
    ])
    fit = decode_fit(export_fit(build_activity(records)))
    assert [r["heart_rate"] for r in fit["record"]] == [100 + i for i in range(20)]
    (lap,) = fit["lap"]
    assert lap["max_heart_rate"] == 119
    assert lap["avg_heart_rate"] == round(sum(range(100, 120)) / 20)
    assert fit["session"][0]["max_heart_rate"] == 119
    assert fit["session"][0]["total_distance"] == pytest.approx(9.0)


def test_a_damaged_fit_fails_its_crc(completed: Records) -> None:
    data = bytearray(export_fit(build_activity(completed)))
    data[200] ^= 0xFF
    with pytest.raises(fitdecode.FitCRCError):
        decode_fit(bytes(data))


def test_nothing_to_export() -> None:
    with pytest.raises(ExportError):
        build_activity([{"type": "log_header", "format": "retrotread-session", "version": 1}])
    with pytest.raises(ExportError, match="unknown format"):
        export_session(_synthetic(), "gpx")
    with pytest.raises(ExportError, match="unknown sport"):
        export_fit(build_activity(_synthetic()), sport="swimming")


# ------------------------------------------------------------------ TCX
NS = {"t": "http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2",
      "x": "http://www.garmin.com/xmlschemas/ActivityExtension/v2"}
T = "{" + NS["t"] + "}"

# The element order of TrainingCenterDatabase v2 for the types we write:
# (child, required) in sequence order.
SEQUENCES: dict[str, list[tuple[str, bool]]] = {
    "TrainingCenterDatabase": [("Folders", False), ("Activities", False), ("Workouts", False),
                               ("Courses", False), ("Author", False), ("Extensions", False)],
    "Activities": [("Activity", False)],
    "Activity": [("Id", True), ("Lap", True), ("Notes", False), ("Training", False),
                 ("Creator", False), ("Extensions", False)],
    "Lap": [("TotalTimeSeconds", True), ("DistanceMeters", True), ("MaximumSpeed", False),
            ("Calories", True), ("AverageHeartRateBpm", False), ("MaximumHeartRateBpm", False),
            ("Intensity", True), ("Cadence", False), ("TriggerMethod", True), ("Track", False),
            ("Notes", False), ("Extensions", False)],
    "Track": [("Trackpoint", True)],
    "Trackpoint": [("Time", True), ("Position", False), ("AltitudeMeters", False),
                   ("DistanceMeters", False), ("HeartRateBpm", False), ("Cadence", False),
                   ("SensorState", False), ("Extensions", False)],
    "AverageHeartRateBpm": [("Value", True)],
    "MaximumHeartRateBpm": [("Value", True)],
    "HeartRateBpm": [("Value", True)],
}
ENUMS = {"Intensity": {"Active", "Resting"},
         "TriggerMethod": {"Manual", "Distance", "Location", "Time", "HeartRate"}}


def check_tcx_structure(element: ET.Element) -> None:
    """Each element's children appear in schema order, required ones present."""
    name = element.tag.removeprefix(T)
    if name in SEQUENCES:
        order = [child for child, _ in SEQUENCES[name]]
        children = [c.tag.removeprefix(T) for c in element if c.tag.startswith(T)]
        assert all(c in order for c in children), (name, children)
        positions = [order.index(c) for c in children]
        assert positions == sorted(positions), (name, children)
        for child, required in SEQUENCES[name]:
            assert not required or child in children, (name, child)
        for child in element:
            check_tcx_structure(child)
    if name in ENUMS:
        assert element.text in ENUMS[name]


def _iso(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_tcx_of_a_real_session(completed: Records) -> None:
    text = export_tcx(build_activity(completed))
    root = ET.fromstring(text.encode("utf-8"))
    assert root.tag == T + "TrainingCenterDatabase"
    check_tcx_structure(root)
    activity = root.find("t:Activities/t:Activity", NS)
    assert activity is not None and activity.get("Sport") == "Other"
    start = _iso(activity.findtext("t:Id", namespaces=NS) or "")
    laps = activity.findall("t:Lap", NS)
    segments = [r for r in completed if r["type"] == "segment_started"]
    assert len(laps) == len(segments)
    for lap, segment in zip(laps, segments, strict=True):
        notes = lap.findtext("t:Notes", namespaces=NS) or ""
        assert segment["label"] in notes and segment["direction"] in notes
    assert _iso(laps[0].get("StartTime") or "") == start
    total = sum(float(lap.findtext("t:DistanceMeters", namespaces=NS) or 0) for lap in laps)
    assert total == pytest.approx(summarize(completed).distance_m, abs=2)
    points = activity.findall(".//t:Trackpoint", NS)
    telemetry = [r for r in completed if r["type"] == "telemetry"]
    assert len(points) == len(telemetry)
    times = [_iso(p.findtext("t:Time", namespaces=NS) or "") for p in points]
    assert times == sorted(times)
    speeds = [float(p.findtext(".//x:Speed", namespaces=NS) or "nan") for p in points]
    assert speeds[300] * 3.6 == pytest.approx(telemetry[300]["speed_kmh"], abs=0.005)


def test_tcx_heart_rate_and_sport() -> None:
    records = _synthetic(*[
        {"type": "telemetry", "t": 10.0 + i, "speed_kmh": 1.8, "distance_m": 100 + i,
         "elapsed_s": i, "heart_rate_bpm": 120, "target_kmh": 1.8, "facing": "backward"}
        for i in range(5)
    ])
    root = ET.fromstring(export_tcx(build_activity(records), sport="running"))
    check_tcx_structure(root)
    activity = root.find("t:Activities/t:Activity", NS)
    assert activity is not None and activity.get("Sport") == "Running"
    assert activity.findtext("t:Lap/t:MaximumHeartRateBpm/t:Value", namespaces=NS) == "120"
    values = activity.findall(".//t:Trackpoint/t:HeartRateBpm/t:Value", NS)
    assert [v.text for v in values] == ["120"] * 5


# ------------------------------------------------------------------ CSV and the CLI


def test_csv_of_a_real_session(completed: Records) -> None:
    rows = list(csv.DictReader(io.StringIO(export_csv(build_activity(completed)))))
    telemetry = [r for r in completed if r["type"] == "telemetry"]
    assert len(rows) == len(telemetry)
    assert float(rows[0]["time_s"]) == 0.0
    row = rows[400]
    assert float(row["speed_kmh"]) == pytest.approx(telemetry[400]["speed_kmh"], abs=0.005)
    assert float(row["speed_mph"]) == pytest.approx(float(row["speed_kmh"]) / 1.609344,
                                                    abs=0.001)
    assert row["facing"] == telemetry[400]["facing"]
    assert {r["lap"] for r in rows} == {str(i) for i in range(1, 9)}
    for row, sample in zip(rows, telemetry, strict=True):  # empty when none was sent
        hr = sample["heart_rate_bpm"]
        assert row["heart_rate_bpm"] == ("" if not hr else str(hr))


def test_cli_export_every_format(log_dir: Path, tmp_path: Path,  # noqa: F811
                                 monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.fit"
    assert main(["export", "20250301", "--dir", str(log_dir), "--format", "fit",
                 "--allow-simulated", "-o", str(out)]) == 0
    assert len(decode_fit(out.read_bytes())["lap"]) == 8
    monkeypatch.chdir(tmp_path)
    assert main(["export", "last", "--dir", str(log_dir), "-f", "tcx", "--allow-simulated"]) == 0
    tcx = tmp_path / "20250305-080000-first-session.tcx"
    check_tcx_structure(ET.parse(tcx).getroot())
    capsys.readouterr()
    path = log_dir / "20250303-080000-first-session.jsonl"
    assert main(["export", str(path), "-f", "csv", "-o", "-", "--allow-simulated"]) == 0
    assert capsys.readouterr().out.startswith("time_s,wall_time,speed_kmh")


# ------------------------------------------------------------------ FIT: the SDK's view
def sdk_read(data: bytes) -> dict[str, list[dict[str, Any]]]:
    """Garmin's own decoder: the file's integrity (header, sizes, both CRCs), then every
    message, with no decoding errors."""
    assert Decoder(Stream.from_byte_array(bytearray(data))).check_integrity()
    messages, errors = Decoder(Stream.from_byte_array(bytearray(data))).read()
    assert errors == []
    return messages


def test_fit_passes_the_sdk_integrity_check_and_names_its_creator(completed: Records) -> None:
    data = export_fit(build_activity(completed))
    fit = sdk_read(data)
    (file_id,) = fit["file_id_mesgs"]
    assert file_id["type"] == "activity" and file_id["manufacturer"] == "development"
    assert fit["file_creator_mesgs"][0]["software_version"] is not None
    creator, treadmill = fit["device_info_mesgs"]
    assert creator["device_index"] == "creator" and creator["product_name"] == "retrotread"
    started = next(r for r in completed if r["type"] == "session_started")
    assert treadmill["product_name"] == started["device"]
    damaged = bytearray(data)
    damaged[300] ^= 0x01
    assert not Decoder(Stream.from_byte_array(damaged)).check_integrity()


def test_fit_says_which_way_the_person_faced_each_second(completed: Records) -> None:
    data = export_fit(build_activity(completed))
    fit = sdk_read(data)
    (description,) = fit["field_description_mesgs"]
    assert description["field_name"] == "facing_backward"
    (developer,) = fit["developer_data_id_mesgs"]
    assert developer["developer_data_index"] == description["developer_data_index"]
    telemetry = [r for r in completed if r["type"] == "telemetry"]
    sdk_facing = [m["developer_fields"][description["key"]] for m in fit["record_mesgs"]]
    assert sdk_facing == [int(r["facing"] == "backward") for r in telemetry]
    assert 0 < sum(sdk_facing) < len(sdk_facing)
    # fitdecode, independently, sees the same developer field by its name.
    decoded = [r["facing_backward"] for r in decode_fit(data)["record"]]
    assert decoded == sdk_facing


def test_fit_timer_pauses_at_every_turnaround(completed: Records) -> None:
    activity = build_activity(completed)
    fit = sdk_read(export_fit(activity))
    t0 = next(r["t"] for r in completed if r["type"] == "session_started")
    stopped = [r["t"] - t0 for r in completed
               if r["type"] == "turnaround" and r["phase"] == "stopped"]
    restarted = [r["t"] - t0 for r in completed  # not the first start of the belt
                 if r["type"] == "turnaround" and r["phase"] == "start"
                 and r["t"] - t0 > stopped[0]]
    assert len(stopped) == len(restarted) >= 2
    timer = [m for m in fit["event_mesgs"] if m["event"] == "timer"]
    kinds = [m["event_type"] for m in timer]
    assert kinds == ["start"] + ["stop_all", "start"] * len(stopped) + ["stop_all"]
    start = fit["session_mesgs"][0]["start_time"]
    stops = [(m["timestamp"] - start).total_seconds() for m in timer[1:-1:2]]
    starts = [(m["timestamp"] - start).total_seconds() for m in timer[2:-1:2]]
    assert stops == pytest.approx(stopped, abs=1.0) and starts == pytest.approx(restarted,
                                                                                 abs=1.0)
    paused = sum(b - a for a, b in zip(stopped, restarted, strict=True))
    (session,) = fit["session_mesgs"]
    assert session["total_timer_time"] == pytest.approx(
        session["total_elapsed_time"] - paused, abs=0.01)
    assert sum(lap["total_timer_time"] for lap in fit["lap_mesgs"]) == pytest.approx(
        session["total_timer_time"], abs=0.01)
    assert fit["activity_mesgs"][0]["total_timer_time"] == session["total_timer_time"]


def test_steps_and_cadence_where_the_machine_counts_steps() -> None:
    # 2 steps a second = 120 steps/min = 60 strides/min, then 100 steps/min.
    steps = [500 + 2 * i for i in range(30)] + [558 + round(i * 100 / 60) for i in range(1, 31)]
    records = _synthetic(*[
        {"type": "telemetry", "t": 10.0 + i, "speed_kmh": 1.8, "distance_m": 100 + i // 2,
         "elapsed_s": i, "heart_rate_bpm": None, "target_kmh": 1.8, "facing": "backward",
         "step_count": count} for i, count in enumerate(steps)
    ])
    data = export_fit(build_activity(records))
    fit = sdk_read(data)
    cadences = [m.get("cadence") for m in fit["record_mesgs"]]
    assert cadences[0] is None  # no earlier count to compare with
    assert set(cadences[1:30]) == {60}
    assert all(45 <= c <= 55 for c in cadences[36:])  # 100 steps/min, whole steps
    (lap,) = fit["lap_mesgs"]
    assert lap["total_strides"] == (steps[-1] - steps[0]) // 2
    assert lap["max_cadence"] == 60 and 50 <= lap["avg_cadence"] <= 60
    assert fit["session_mesgs"][0]["total_strides"] == lap["total_strides"]
    decoded = decode_fit(data)
    assert decoded["lap"][0]["total_strides"] == lap["total_strides"]
    # TCX: run cadence (strides per minute) in the ActivityExtension.
    root = ET.fromstring(export_tcx(build_activity(records)))
    check_tcx_structure(root)
    run_cadence = root.findall(".//t:Trackpoint/t:Extensions/x:TPX/x:RunCadence", NS)
    assert [int(c.text or 0) for c in run_cadence[1:30]] == [60] * 29
    assert len(run_cadence) == len(steps) - 1
    # Without step counts there is no cadence at all, not zeros.
    plain = sdk_read(export_fit(build_activity(_synthetic(*[
        {"type": "telemetry", "t": 10.0 + i, "speed_kmh": 1.8, "distance_m": 100 + i,
         "elapsed_s": i, "heart_rate_bpm": None, "target_kmh": 1.8, "facing": "forward"}
        for i in range(5)]))))
    assert all("cadence" not in m for m in plain["record_mesgs"])
    assert "total_strides" not in plain["lap_mesgs"][0]


def test_tcx_names_its_creator(completed: Records) -> None:
    root = ET.fromstring(export_tcx(build_activity(completed)).encode("utf-8"))
    check_tcx_structure(root)
    creator = root.find("t:Activities/t:Activity/t:Creator", NS)
    assert creator is not None and creator.findtext("t:Name", namespaces=NS) == "retrotread"
    assert creator.get("{http://www.w3.org/2001/XMLSchema-instance}type") == "Device_t"
