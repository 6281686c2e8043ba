"""Export a session log as FIT, TCX or CSV (``retrotread export``).

All three start from one :class:`Activity` built from the log's records: the telemetry
samples (time, belt speed, distance relative to the start, heart rate) and one lap per
segment (from its ``segment_started`` record to the next one, the first lap from the
start of the session, the last to its end).

FIT is written here directly (a small encoder: definition and data messages, and the
CRC), as an activity file: ``file_id``, timer start, ``record`` messages, one ``lap`` per
segment, timer stop, ``session`` and ``activity``. Sport walking (or running), sub-sport
treadmill. FIT has no notion of facing backward; the TCX laps carry the segment labels in
their notes, and the CSV has a ``facing`` column.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import re
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrotread.errors import ExportError, UsageError
from retrotread.events import (
    Event,
    SegmentStarted,
    SessionFinished,
    SessionStarted,
    TelemetrySample,
    TurnaroundPhase,
)
from retrotread.formatting import minutes_text
from retrotread.history import resolve_session, session_start
from retrotread.log_reader import Record, as_events, first, last, of, times
from retrotread.recorder import summarize
from retrotread.units import kmh_to_mph

FORMATS = ("fit", "tcx", "csv")


# --------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the session started
    speed_kmh: float | None
    distance_m: float | None  # relative to the first sample
    heart_rate_bpm: int | None
    target_kmh: float | None
    facing: str
    steps: int | None = None  # the machine's step count (relative to the first sample)
    cadence_spm: float | None = None  # steps per minute, where the machine counts steps


@dataclass(frozen=True)
class Pause:
    """The timer stopped: the belt stopped for a turnaround until it started again."""

    start_t: float
    end_t: float


def _overlap(a0: float, a1: float, pauses: Sequence[Pause]) -> float:
    return sum(max(0.0, min(a1, p.end_t) - max(a0, p.start_t)) for p in pauses)


def _cadences(samples: Sequence[Sample]) -> tuple[float | None, float | None]:
    values = [s.cadence_spm for s in samples if s.cadence_spm is not None]
    return (sum(values) / len(values), max(values)) if values else (None, None)


def _strides(samples: Sequence[Sample], t0: float, t1: float) -> int | None:
    """Strides (two steps each) between t0 and t1, from the machine's step count."""
    counted = [s for s in samples if s.steps is not None]
    if not counted:
        return None
    before = [s.steps for s in counted if s.t <= t0 + 1e-9] or [counted[0].steps]
    upto = [s.steps for s in counted if s.t <= t1 + 1e-9] or [counted[0].steps]
    return max(0, (upto[-1] or 0) - (before[-1] or 0)) // 2


@dataclass
class Lap:
    index: int
    label: str
    direction: str
    start_t: float
    end_t: float
    target_kmh: float | None
    distance_m: float = 0.0
    max_speed_kmh: float | None = None
    avg_heart_rate_bpm: int | None = None
    max_heart_rate_bpm: int | None = None
    timer_s: float = 0.0  # the duration less the turnaround pauses inside it
    strides: int | None = None
    avg_cadence_spm: float | None = None
    max_cadence_spm: float | None = None

    @property
    def duration_s(self) -> float:
        return max(0.0, self.end_t - self.start_t)

    @property
    def avg_speed_kmh(self) -> float | None:
        if self.duration_s <= 0:
            return None
        return self.distance_m / 1000 / (self.duration_s / 3600)


@dataclass
class Activity:
    start: datetime.datetime  # aware, UTC
    name: str
    outcome: str
    elapsed_s: float
    distance_m: float
    samples: list[Sample]
    laps: list[Lap]
    backward_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    pauses: list[Pause] = field(default_factory=list)
    device: str | None = None  # the treadmill, as the session log names it
    simulated: bool = False
    speedup: float = 1.0
    """A sped-up simulator demo ran this many times faster than real time: its times are
    the workout's own (``elapsed_s`` is what the plan's clock counted)."""

    @property
    def marker(self) -> str:
        """``SIMULATED`` or ``SIMULATED 20x`` for a simulated session, else empty."""
        if not self.simulated:
            return ""
        return "SIMULATED" + (f" {self.speedup:g}x" if abs(self.speedup - 1) > 1e-9 else "")

    @property
    def title(self) -> str:
        """The name, marked when simulated: ``First session (SIMULATED 20x)``."""
        return f"{self.name} ({self.marker})" if self.marker else self.name

    @property
    def timer_s(self) -> float:
        """Elapsed time less the turnaround pauses (FIT's total_timer_time)."""
        return max(0.0, self.elapsed_s - _overlap(0.0, self.elapsed_s, self.pauses))

    @property
    def avg_speed_kmh(self) -> float | None:
        moving_s = self.timer_s
        return self.distance_m / 1000 / (moving_s / 3600) if moving_s > 0 else None

    @property
    def total_strides(self) -> int | None:
        return _strides(self.samples, 0.0, self.elapsed_s)

    @property
    def avg_cadence_spm(self) -> float | None:
        return _cadences(self.samples)[0]

    @property
    def max_cadence_spm(self) -> float | None:
        return _cadences(self.samples)[1]

    def at(self, t: float) -> datetime.datetime:
        return self.start + datetime.timedelta(seconds=t)

    @property
    def max_speed_kmh(self) -> float | None:
        speeds = [s.speed_kmh for s in self.samples if s.speed_kmh is not None]
        return max(speeds) if speeds else None

    @property
    def heart_rates(self) -> list[int]:
        return [s.heart_rate_bpm for s in self.samples if s.heart_rate_bpm is not None]


def build_activity(records: Sequence[Event | Record], name: str | None = None) -> Activity:
    """The activity of one session's events (see :func:`retrotread.history.read_log`)."""
    events = as_events(records)
    started = first(events, SessionStarted)
    summary = summarize(events)
    known_times = times(events)
    if not known_times:
        raise ExportError("the session log has no records to export")
    t0 = started.time_s if started else known_times[0]
    start = session_start(events) or datetime.datetime.now(datetime.UTC)
    start = start.astimezone(datetime.UTC)
    speedup = summary.speedup if summary.speedup and summary.speedup > 0 else 1.0

    samples: list[Sample] = []
    first_distance: float | None = None
    first_steps: int | None = None
    counted: list[tuple[float, float]] = []  # (t, step count) of the samples with one
    for r in of(events, TelemetrySample):
        if r.distance_m is not None and first_distance is None:
            first_distance = r.distance_m
        rel = max(0.0, r.time_s - t0)
        steps = r.step_count
        cadence: float | None = None
        if steps is not None:
            first_steps = steps if first_steps is None else first_steps
            if counted:
                cadence = _steps_per_minute(counted, rel, steps)
            counted.append((rel, steps))
        samples.append(Sample(
            t=rel,
            speed_kmh=r.speed_kmh,
            distance_m=None if r.distance_m is None or first_distance is None
            else max(0.0, r.distance_m - first_distance),
            heart_rate_bpm=r.heart_rate_bpm if r.heart_rate_bpm is not None
            and r.heart_rate_bpm > 0 else None,
            target_kmh=r.target_kmh,
            facing=r.facing.value,
            steps=None if steps is None or first_steps is None else steps - first_steps,
            cadence_spm=cadence,
        ))
    end_t = max(0.0, max(known_times) - t0)
    finished = last(events, SessionFinished)
    if finished is not None:
        end_t = max(0.0, finished.time_s - t0)
    if samples:
        end_t = max(end_t, samples[-1].t)

    laps: list[Lap] = []
    for segment in of(events, SegmentStarted):
        rel = max(0.0, segment.time_s - t0)
        if laps and rel <= laps[-1].start_t:
            continue  # a repeated record for the same instant
        laps.append(Lap(index=len(laps), label=segment.label or f"Segment {len(laps) + 1}",
                        direction=segment.direction.value, start_t=rel, end_t=rel,
                        target_kmh=segment.speed_kmh))
    if not laps:
        laps.append(Lap(0, name or summary.profile_name or "Session", "forward", 0.0, end_t, None))
    pauses = _turnaround_pauses(events, t0, end_t)
    laps[0].start_t = 0.0
    for lap, following in zip(laps, [*laps[1:], None], strict=True):
        lap.end_t = following.start_t if following is not None else end_t
        _fill_lap(lap, samples, pauses)
    distance = sum(lap.distance_m for lap in laps)
    if speedup != 1.0:
        # A sped-up demo played end_t seconds of workout in end_t / speedup of real time.
        # Its timeline is the workout's own, laid out to end when the demo really ended:
        # never a span that reaches past the real end (into the future).
        start += datetime.timedelta(seconds=end_t / speedup - end_t)
    return Activity(
        start=start,
        name=name or summary.profile_name or "retrotread session",
        outcome=summary.outcome,
        elapsed_s=end_t,
        distance_m=distance,
        samples=samples,
        laps=laps,
        backward_s=summary.backward_s,
        pauses=pauses,
        device=started.device if started and started.device else None,
        simulated=bool(summary.simulated),
        speedup=speedup,
    )


CADENCE_WINDOW_S = 5.0  # whole steps over a few seconds, not 1 s of +-1 step


def _steps_per_minute(earlier: Sequence[tuple[float, float]], t: float, steps: float
                      ) -> float | None:
    """Cadence at ``t`` from the step count ``CADENCE_WINDOW_S`` (or as far as there is)
    before it."""
    base_t, base_steps = earlier[0]
    for sample_t, sample_steps in reversed(earlier):
        if sample_t <= t - CADENCE_WINDOW_S:
            base_t, base_steps = sample_t, sample_steps
            break
    if t <= base_t:
        return None
    return max(0.0, (steps - base_steps) / (t - base_t) * 60)


def _turnaround_pauses(events: Sequence[Event], t0: float, end_t: float) -> list[Pause]:
    """From each turnaround's ``stopped`` phase (belt confirmed stopped) to its ``start``
    (the belt starts again), or to the end of the session."""
    pauses: list[Pause] = []
    stopped_at: float | None = None
    for phase in of(events, TurnaroundPhase):
        rel = min(max(0.0, phase.time_s - t0), end_t)
        if phase.phase == "stopped" and stopped_at is None:
            stopped_at = rel
        elif phase.phase == "start" and stopped_at is not None:
            if rel > stopped_at:
                pauses.append(Pause(stopped_at, rel))
            stopped_at = None
    if stopped_at is not None and end_t > stopped_at:
        pauses.append(Pause(stopped_at, end_t))
    return pauses


def distance_at(samples: Sequence[Sample], t: float) -> float:
    """The relative distance at ``t``: the last known value at or before it."""
    value = 0.0
    for s in samples:
        if s.t > t + 1e-9:
            break
        if s.distance_m is not None:
            value = s.distance_m
    return value


def _fill_lap(lap: Lap, samples: Sequence[Sample], pauses: Sequence[Pause]) -> None:
    inside = [s for s in samples if lap.start_t <= s.t < lap.end_t]
    lap.timer_s = max(0.0, lap.duration_s - _overlap(lap.start_t, lap.end_t, pauses))
    lap.strides = _strides(samples, lap.start_t, lap.end_t)
    lap.avg_cadence_spm, lap.max_cadence_spm = _cadences(inside)
    lap.distance_m = max(0.0, distance_at(samples, lap.end_t) - distance_at(samples, lap.start_t))
    speeds = [s.speed_kmh for s in inside if s.speed_kmh is not None]
    lap.max_speed_kmh = max(speeds) if speeds else None
    hrs = [s.heart_rate_bpm for s in inside if s.heart_rate_bpm is not None]
    if hrs:
        lap.avg_heart_rate_bpm = round(sum(hrs) / len(hrs))
        lap.max_heart_rate_bpm = max(hrs)


# --------------------------------------------------------------------------- FIT
# Written with the encoder of Garmin's FIT SDK (garmin-fit-sdk): it writes the header,
# definition messages, scale/offset, enum names and both CRCs from the SDK's profile.
SPORTS = ("walking", "running")
FIT_EPOCH = datetime.datetime(1989, 12, 31, tzinfo=datetime.UTC)
# retrotread's developer data: one field per record, which way the person faced.
DEVELOPER_INDEX = 0
FACING_FIELD = "facing_backward"  # 1: facing the rear of the treadmill (walking backward)
APPLICATION_ID = uuid.UUID("6f1e2c3a-5b7d-4e8f-9a0b-72657472a7d1")  # retrotread's, fixed


def fit_time(moment: datetime.datetime) -> int:
    """Seconds since the FIT epoch (1989-12-31 UTC), whole seconds."""
    return int((moment - FIT_EPOCH).total_seconds())


def _software_version() -> float:
    """``0.1.0`` -> 0.01, ``2.13`` -> 2.13: FIT's software_version counts hundredths, so
    the minor version takes two digits."""
    from retrotread import __version__

    parts = [int(p) for p in re.findall(r"\d+", __version__)[:2]] + [0, 0]
    return parts[0] + min(parts[1], 99) / 100


def _mps(kmh: float | None) -> float | None:
    return None if kmh is None else kmh / 3.6


def _facing_descriptions() -> dict[int, dict[str, Any]]:
    developer = {"developer_data_index": DEVELOPER_INDEX,
                 "application_id": list(APPLICATION_ID.bytes),
                 "application_version": round(_software_version() * 100),
                 "manufacturer_id": "development"}
    description = {"developer_data_index": DEVELOPER_INDEX, "field_definition_number": 0,
                   "fit_base_type_id": 2, "field_name": FACING_FIELD,  # 2: uint8
                   "units": "1=backward", "native_mesg_num": 20}  # on record messages
    return {0: {"developer_data_id_mesg": developer, "field_description_mesg": description}}


def _cadence(spm: float | None) -> tuple[int | None, float | None]:
    """Steps per minute -> FIT ``cadence`` in strides (cycles) per minute and its
    fraction (walking and running count one cycle per two steps)."""
    if spm is None:
        return None, None
    strides = spm / 2
    return int(strides), round(strides - int(strides), 3)


def export_fit(activity: Activity, sport: str = "walking") -> bytes:
    """The activity as a FIT activity file (bytes), through the FIT SDK's encoder.

    file_id, file_creator and device_info (retrotread as creator, the treadmill as a
    second device), retrotread's developer field description, timer start, one record a
    second (speed, distance, heart rate, cadence where the machine counts steps, and the
    ``facing_backward`` developer field), a timer stop and start around every turnaround
    the belt stopped for, one lap per segment, session and activity.
    """
    from garmin_fit_sdk import Encoder, Profile

    if sport not in SPORTS:
        raise ExportError(f"unknown sport {sport!r}: use one of {', '.join(SPORTS)}")
    num = Profile["mesg_num"]
    descriptions = _facing_descriptions()
    encoder = Encoder(field_descriptions=descriptions)

    def write(message: str, **fields: Any) -> None:
        encoder.write_mesg({"mesg_num": num[message],
                            **{k: v for k, v in fields.items() if v is not None}})

    start = activity.start
    end = activity.at(activity.elapsed_s)
    version = _software_version()
    write("FILE_ID", type="activity", manufacturer="development", product=0,
          time_created=start, serial_number=None)
    write("FILE_CREATOR", software_version=round(version * 100))
    write("DEVICE_INFO", timestamp=start, device_index="creator", manufacturer="development",
          product=0, product_name="retrotread", software_version=version)
    if activity.device:
        write("DEVICE_INFO", timestamp=start, device_index=1, manufacturer="development",
              product_name=activity.device[:40],
              descriptor=f"{activity.marker} treadmill" if activity.simulated
              else "treadmill (FTMS)")
    write("SPORT", sport=sport, sub_sport="treadmill", name=activity.title[:60])
    (desc,) = descriptions.values()
    write("DEVELOPER_DATA_ID", **desc["developer_data_id_mesg"])
    write("FIELD_DESCRIPTION", **desc["field_description_mesg"])
    write("EVENT", timestamp=start, event="timer", event_type="start", event_group=0)

    # One record per whole second (the last sample of that second), with the timer
    # events and each lap message in time order between them.
    by_second: dict[int, Sample] = {}
    for sample in activity.samples:
        by_second[fit_time(activity.at(sample.t))] = sample
    timeline: list[tuple[float, int, Any]] = []  # (t, order at the same t, item)
    for sample in by_second.values():
        timeline.append((sample.t, 1, sample))
    for pause in activity.pauses:
        timeline.append((pause.start_t, 0, ("stop", pause)))
        if pause.end_t < activity.elapsed_s:
            timeline.append((pause.end_t, 2, ("start", pause)))
    for lap in activity.laps[:-1]:
        timeline.append((lap.end_t, 3, lap))
    for _t, _order, item in sorted(timeline, key=lambda entry: (entry[0], entry[1])):
        if isinstance(item, Sample):
            strides, fraction = _cadence(item.cadence_spm)
            write("RECORD", timestamp=activity.at(item.t),
                  distance=item.distance_m, speed=_mps(item.speed_kmh),
                  enhanced_speed=_mps(item.speed_kmh), heart_rate=item.heart_rate_bpm,
                  cadence=strides, fractional_cadence=fraction,
                  developer_fields={0: 1 if item.facing == "backward" else 0})
        elif isinstance(item, Lap):
            _write_lap(write, activity, item, sport)
        else:
            kind, pause = item
            write("EVENT", timestamp=activity.at(pause.start_t if kind == "stop" else
                                                 pause.end_t),
                  event="timer", event_type="stop_all" if kind == "stop" else "start",
                  event_group=0)
    _write_lap(write, activity, activity.laps[-1], sport)
    write("EVENT", timestamp=end, event="timer", event_type="stop_all", event_group=0)
    hrs = activity.heart_rates
    strides_total = activity.total_strides
    write("SESSION", message_index=0, timestamp=end, event="session", event_type="stop",
          start_time=start, sport=sport, sub_sport="treadmill",
          total_elapsed_time=activity.elapsed_s, total_timer_time=activity.timer_s,
          total_distance=activity.distance_m, avg_speed=_mps(activity.avg_speed_kmh),
          enhanced_avg_speed=_mps(activity.avg_speed_kmh),
          max_speed=_mps(activity.max_speed_kmh),
          enhanced_max_speed=_mps(activity.max_speed_kmh),
          avg_heart_rate=round(sum(hrs) / len(hrs)) if hrs else None,
          max_heart_rate=max(hrs) if hrs else None,
          total_cycles=strides_total, avg_cadence=_cadence(activity.avg_cadence_spm)[0],
          max_cadence=_cadence(activity.max_cadence_spm)[0],
          first_lap_index=0, num_laps=len(activity.laps), trigger="activity_end")
    local_offset = start.astimezone().utcoffset() or datetime.timedelta(0)
    write("ACTIVITY", timestamp=end, total_timer_time=activity.timer_s, num_sessions=1,
          type="manual", event="activity", event_type="stop",
          local_timestamp=fit_time(end + local_offset))
    data: bytes = encoder.close()
    return data


def _write_lap(write: Any, activity: Activity, lap: Lap, sport: str) -> None:
    last = lap.index == len(activity.laps) - 1
    write("LAP", message_index=lap.index, timestamp=activity.at(lap.end_t), event="lap",
          event_type="stop", start_time=activity.at(lap.start_t),
          total_elapsed_time=lap.duration_s, total_timer_time=lap.timer_s,
          total_distance=lap.distance_m, avg_speed=_mps(lap.avg_speed_kmh),
          enhanced_avg_speed=_mps(lap.avg_speed_kmh), max_speed=_mps(lap.max_speed_kmh),
          enhanced_max_speed=_mps(lap.max_speed_kmh), avg_heart_rate=lap.avg_heart_rate_bpm,
          max_heart_rate=lap.max_heart_rate_bpm, total_cycles=lap.strides,
          avg_cadence=_cadence(lap.avg_cadence_spm)[0],
          max_cadence=_cadence(lap.max_cadence_spm)[0],
          lap_trigger="session_end" if last else "manual", sport=sport,
          sub_sport="treadmill")


# --------------------------------------------------------------------------- TCX
TCX_NS = "http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2"
TCX_EXT_NS = "http://www.garmin.com/xmlschemas/ActivityExtension/v2"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
TCX_SCHEMA_LOCATION = (f"{TCX_NS} http://www.garmin.com/xmlschemas/"
                       "TrainingCenterDatabasev2.xsd")


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def export_tcx(activity: Activity, sport: str = "walking") -> str:
    """The activity as Training Center XML (TCX v2), built with ElementTree. Sport is
    Running or Other; the segment label and direction go in each lap's notes; speed and
    (where the machine counts steps) run cadence in the ActivityExtension."""
    from xml.etree import ElementTree as ET

    # Prefixes for serializing (ElementTree keeps them in one process-wide table).
    ET.register_namespace("", TCX_NS)
    ET.register_namespace("ae", TCX_EXT_NS)

    def sub(parent: ET.Element, tag: str, text: object = None, ns: str = TCX_NS,
            **attrs: str) -> ET.Element:
        element = ET.SubElement(parent, f"{{{ns}}}{tag}", attrs)
        if text is not None:
            element.text = str(text)
        return element

    root = ET.Element(f"{{{TCX_NS}}}TrainingCenterDatabase",
                      {f"{{{XSI_NS}}}schemaLocation": TCX_SCHEMA_LOCATION})
    xml_activity = sub(sub(root, "Activities"), "Activity",
                       Sport="Running" if sport == "running" else "Other")
    sub(xml_activity, "Id", _iso(activity.start))
    for lap in activity.laps:
        xml_lap = sub(xml_activity, "Lap", StartTime=_iso(activity.at(lap.start_t)))
        sub(xml_lap, "TotalTimeSeconds", f"{lap.timer_s:.1f}")
        sub(xml_lap, "DistanceMeters", f"{lap.distance_m:.1f}")
        if lap.max_speed_kmh is not None:
            sub(xml_lap, "MaximumSpeed", f"{lap.max_speed_kmh / 3.6:.3f}")
        sub(xml_lap, "Calories", 0)
        if lap.avg_heart_rate_bpm and lap.max_heart_rate_bpm:
            sub(sub(xml_lap, "AverageHeartRateBpm"), "Value", lap.avg_heart_rate_bpm)
            sub(sub(xml_lap, "MaximumHeartRateBpm"), "Value", lap.max_heart_rate_bpm)
        sub(xml_lap, "Intensity", "Active")
        sub(xml_lap, "TriggerMethod", "Manual")
        last = lap.index == len(activity.laps) - 1
        inside = [s for s in activity.samples
                  if lap.start_t <= s.t < lap.end_t or (last and s.t == lap.end_t)]
        if inside:
            track = sub(xml_lap, "Track")
            for sample in inside:
                point = sub(track, "Trackpoint")
                sub(point, "Time", _iso(activity.at(sample.t)))
                if sample.distance_m is not None:
                    sub(point, "DistanceMeters", f"{sample.distance_m:.1f}")
                if sample.heart_rate_bpm:
                    sub(sub(point, "HeartRateBpm"), "Value", sample.heart_rate_bpm)
                if sample.speed_kmh is not None or sample.cadence_spm is not None:
                    tpx = sub(sub(point, "Extensions"), "TPX", ns=TCX_EXT_NS)
                    if sample.speed_kmh is not None:
                        sub(tpx, "Speed", f"{sample.speed_kmh / 3.6:.3f}", ns=TCX_EXT_NS)
                    if sample.cadence_spm is not None:
                        sub(tpx, "RunCadence", round(sample.cadence_spm / 2), ns=TCX_EXT_NS)
        sub(xml_lap, "Notes", f"{lap.label} ({lap.direction})")
        if lap.avg_cadence_spm is not None:
            lx = sub(sub(xml_lap, "Extensions"), "LX", ns=TCX_EXT_NS)
            sub(lx, "AvgRunCadence", round(lap.avg_cadence_spm / 2), ns=TCX_EXT_NS)
    sub(xml_activity, "Notes", f"{activity.title}: {activity.outcome}, "
        f"{minutes_text(activity.backward_s)} backward (retrotread)")
    creator = sub(xml_activity, "Creator", **{f"{{{XSI_NS}}}type": "Device_t"})
    sub(creator, "Name", "retrotread")
    sub(creator, "UnitId", 0)
    sub(creator, "ProductID", 0)
    version = sub(creator, "Version")
    major, minor = divmod(round(_software_version() * 100), 100)
    sub(version, "VersionMajor", major)
    sub(version, "VersionMinor", minor)
    ET.indent(root, space="  ")
    body = ET.tostring(root, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"


# --------------------------------------------------------------------------- CSV
CSV_COLUMNS = ("time_s", "wall_time", "speed_kmh", "speed_mph", "distance_m",
               "heart_rate_bpm", "target_kmh", "facing", "lap", "segment", "simulated")


def export_csv(activity: Activity) -> str:
    """One row per telemetry sample; empty cells where a value is unknown. The last column
    marks a simulated session (``SIMULATED``, ``SIMULATED 20x``); empty on a treadmill."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in activity.samples:
        lap = next((lap for lap in reversed(activity.laps) if lap.start_t <= s.t),
                   activity.laps[0])
        writer.writerow([
            f"{s.t:.2f}", _iso(activity.at(s.t)),
            "" if s.speed_kmh is None else f"{s.speed_kmh:.2f}",
            "" if s.speed_kmh is None else f"{kmh_to_mph(s.speed_kmh):.3f}",
            "" if s.distance_m is None else f"{s.distance_m:.1f}",
            "" if s.heart_rate_bpm is None else s.heart_rate_bpm,
            "" if s.target_kmh is None else f"{s.target_kmh:.2f}",
            s.facing, lap.index + 1, lap.label, activity.marker,
        ])
    return buffer.getvalue()


# --------------------------------------------------------------------------- CLI
def export_session(records: Sequence[Event | Record], fmt: str, sport: str = "walking") -> bytes:
    """The session in ``fmt`` (fit, tcx or csv), as bytes ready to write."""
    activity = build_activity(records)
    if fmt == "fit":
        return export_fit(activity, sport)
    if fmt == "tcx":
        return export_tcx(activity, sport).encode("utf-8")
    if fmt == "csv":
        return export_csv(activity).encode("utf-8")
    raise ExportError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("session", metavar="SESSION",
                   help="a session log path, an id from `retrotread history` (or its start), "
                   "or `last`")
    p.add_argument("--format", "-f", choices=FORMATS, default="fit", dest="fmt",
                   help="fit (default; Garmin Connect, Strava), tcx or csv")
    p.add_argument("-o", "--output", type=Path, default=None, metavar="FILE",
                   help="output file (default: the session id with the format's extension "
                   "in the current folder; - for standard output)")
    p.add_argument("--sport", choices=sorted(SPORTS), default="walking",
                   help="the activity's sport (sub-sport is always treadmill)")
    p.add_argument("--dir", type=Path, default=None, metavar="DIR",
                   help="log directory to look ids up in")
    p.add_argument("--allow-simulated", action="store_true",
                   help="export a session on the simulator too, marked SIMULATED, in the "
                   "workout's own time (refused by default: a demo is not a workout)")


def check_exportable(records: Sequence[Event | Record], *, allow_simulated: bool = False) -> None:
    """Refuse a simulated session unless asked (:class:`UsageError`)."""
    summary = summarize(records)
    if summary.simulated and not allow_simulated:
        speed = (f" at {summary.speedup:g}x speed"
                 if summary.speedup and abs(summary.speedup - 1) > 1e-9 else "")
        raise UsageError(f"this session ran on the simulator{speed}, not a treadmill: not "
                         "exported (--allow-simulated exports it, marked SIMULATED)")


def run_export(args: argparse.Namespace) -> int:
    sid, records = resolve_session(args.session, args.dir)
    check_exportable(records, allow_simulated=args.allow_simulated)
    data = export_session(records, args.fmt, args.sport)
    output: Path | None = args.output
    if output is not None and str(output) == "-":
        sys.stdout.buffer.write(data)
        return 0
    if output is None:
        output = Path(f"{sid.replace(':', '-')}.{args.fmt}")
    output.write_bytes(data)
    print(f"wrote {output} ({len(data)} bytes)")
    return 0


