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
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from retrotread.errors import RetrotreadError
from retrotread.history import Record, resolve_session, session_start
from retrotread.recorder import summarize
from retrotread.units import kmh_to_mph

FORMATS = ("fit", "tcx", "csv")


class ExportError(RetrotreadError):
    """A session that cannot be exported (e.g. no telemetry at all)."""


# --------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the session started
    speed_kmh: float | None
    distance_m: float | None  # relative to the first sample
    heart_rate_bpm: int | None
    target_kmh: float | None
    facing: str


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

    def at(self, t: float) -> datetime.datetime:
        return self.start + datetime.timedelta(seconds=t)

    @property
    def max_speed_kmh(self) -> float | None:
        speeds = [s.speed_kmh for s in self.samples if s.speed_kmh is not None]
        return max(speeds) if speeds else None

    @property
    def heart_rates(self) -> list[int]:
        return [s.heart_rate_bpm for s in self.samples if s.heart_rate_bpm is not None]


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def build_activity(records: Sequence[Record], name: str | None = None) -> Activity:
    """The activity of one session's records (see :func:`retrotread.history.read_log`)."""
    started = next((r for r in records if r.get("type") == "session_started"), None)
    summary = summarize(records)
    times = [t for r in records if r.get("type") != "log_header"
             and (t := _num(r.get("t"))) is not None]
    if not times:
        raise ExportError("the session log has no records to export")
    t0 = _num(started.get("t")) if started else None
    if t0 is None:
        t0 = times[0]
    start = session_start(records) or datetime.datetime.now(datetime.UTC)
    start = start.astimezone(datetime.UTC)

    samples: list[Sample] = []
    first_distance: float | None = None
    for r in records:
        if r.get("type") != "telemetry" or (t := _num(r.get("t"))) is None:
            continue
        distance = _num(r.get("distance_m"))
        if distance is not None and first_distance is None:
            first_distance = distance
        hr = _num(r.get("heart_rate_bpm"))
        samples.append(Sample(
            t=max(0.0, t - t0),
            speed_kmh=_num(r.get("speed_kmh")),
            distance_m=None if distance is None or first_distance is None
            else max(0.0, distance - first_distance),
            heart_rate_bpm=int(hr) if hr is not None and hr > 0 else None,
            target_kmh=_num(r.get("target_kmh")),
            facing=str(r.get("facing", "forward")),
        ))
    end_t = max(0.0, max(times) - t0)
    finished = next((r for r in reversed(records) if r.get("type") == "session_finished"), None)
    if finished is not None and (ft := _num(finished.get("t"))) is not None:
        end_t = max(0.0, ft - t0)
    if samples:
        end_t = max(end_t, samples[-1].t)

    laps: list[Lap] = []
    for r in records:
        if r.get("type") != "segment_started" or (t := _num(r.get("t"))) is None:
            continue
        rel = max(0.0, t - t0)
        if laps and rel <= laps[-1].start_t:
            continue  # a repeated record for the same instant
        laps.append(Lap(index=len(laps), label=str(r.get("label") or f"Segment {len(laps) + 1}"),
                        direction=str(r.get("direction", "forward")), start_t=rel, end_t=rel,
                        target_kmh=_num(r.get("speed_kmh"))))
    if not laps:
        laps.append(Lap(0, name or summary.profile_name or "Session", "forward", 0.0, end_t, None))
    laps[0].start_t = 0.0
    for lap, following in zip(laps, [*laps[1:], None], strict=True):
        lap.end_t = following.start_t if following is not None else end_t
        _fill_lap(lap, samples)
    distance = sum(lap.distance_m for lap in laps)
    return Activity(
        start=start,
        name=name or summary.profile_name or "retrotread session",
        outcome=summary.outcome,
        elapsed_s=end_t,
        distance_m=distance,
        samples=samples,
        laps=laps,
        backward_s=summary.backward_s,
    )


def distance_at(samples: Sequence[Sample], t: float) -> float:
    """The relative distance at ``t``: the last known value at or before it."""
    value = 0.0
    for s in samples:
        if s.t > t + 1e-9:
            break
        if s.distance_m is not None:
            value = s.distance_m
    return value


def _fill_lap(lap: Lap, samples: Sequence[Sample]) -> None:
    inside = [s for s in samples if lap.start_t <= s.t < lap.end_t]
    lap.distance_m = max(0.0, distance_at(samples, lap.end_t) - distance_at(samples, lap.start_t))
    speeds = [s.speed_kmh for s in inside if s.speed_kmh is not None]
    lap.max_speed_kmh = max(speeds) if speeds else None
    hrs = [s.heart_rate_bpm for s in inside if s.heart_rate_bpm is not None]
    if hrs:
        lap.avg_heart_rate_bpm = round(sum(hrs) / len(hrs))
        lap.max_heart_rate_bpm = max(hrs)


# --------------------------------------------------------------------------- FIT
FIT_EPOCH = datetime.datetime(1989, 12, 31, tzinfo=datetime.UTC)
FIT_PROFILE_VERSION = 2132  # 21.32
FIT_PROTOCOL_VERSION = 0x20  # 2.0
SPORTS = {"walking": 11, "running": 1}
SUB_SPORT_TREADMILL = 1
MANUFACTURER_DEVELOPMENT = 255

# base types: (code, struct format, invalid value)
ENUM = (0x00, "B", 0xFF)
UINT8 = (0x02, "B", 0xFF)
UINT16 = (0x84, "H", 0xFFFF)
UINT32 = (0x86, "I", 0xFFFFFFFF)
UINT32Z = (0x8C, "I", 0)

_CRC_TABLE = (0x0000, 0xCC01, 0xD801, 0x1400, 0xF001, 0x3C00, 0x2800, 0xE401,
              0xA001, 0x6C00, 0x7800, 0xB401, 0x5000, 0x9C01, 0x8801, 0x4400)


def fit_crc(data: bytes, crc: int = 0) -> int:
    """The FIT CRC-16 (the SDK's nibble-table algorithm)."""
    for byte in data:
        tmp = _CRC_TABLE[crc & 0xF]
        crc = (crc >> 4) & 0x0FFF
        crc = crc ^ tmp ^ _CRC_TABLE[byte & 0xF]
        tmp = _CRC_TABLE[crc & 0xF]
        crc = (crc >> 4) & 0x0FFF
        crc = crc ^ tmp ^ _CRC_TABLE[(byte >> 4) & 0xF]
    return crc


FieldDef = tuple[int, tuple[int, str, int]]  # (field number, base type)

# Global message numbers and the fields we write, in order.
FILE_ID = (0, [(0, ENUM), (1, UINT16), (2, UINT16), (3, UINT32Z), (4, UINT32)])
EVENT = (21, [(253, UINT32), (0, ENUM), (1, ENUM), (4, UINT8)])
RECORD = (20, [(253, UINT32), (5, UINT32), (6, UINT16), (73, UINT32), (3, UINT8)])
LAP = (19, [(254, UINT16), (253, UINT32), (0, ENUM), (1, ENUM), (2, UINT32), (7, UINT32),
            (8, UINT32), (9, UINT32), (13, UINT16), (14, UINT16), (15, UINT8), (16, UINT8),
            (24, ENUM), (25, ENUM), (39, ENUM)])
SESSION = (18, [(254, UINT16), (253, UINT32), (0, ENUM), (1, ENUM), (2, UINT32), (5, ENUM),
                (6, ENUM), (7, UINT32), (8, UINT32), (9, UINT32), (14, UINT16), (15, UINT16),
                (16, UINT8), (17, UINT8), (25, UINT16), (26, UINT16), (28, ENUM)])
ACTIVITY = (34, [(253, UINT32), (0, UINT32), (1, UINT16), (2, ENUM), (3, ENUM), (4, ENUM),
                 (5, UINT32)])

EVENT_TIMER, EVENT_LAP, EVENT_SESSION, EVENT_ACTIVITY = 0, 9, 8, 26
EVENT_TYPE_START, EVENT_TYPE_STOP, EVENT_TYPE_STOP_ALL = 0, 1, 4
LAP_TRIGGER_MANUAL, LAP_TRIGGER_SESSION_END = 0, 7


class FitWriter:
    """Definition and data messages; local message types are assigned per global one."""

    def __init__(self) -> None:
        self._body = bytearray()
        self._local: dict[int, int] = {}

    def write(self, message: tuple[int, list[FieldDef]], values: dict[int, float | int | None]
              ) -> None:
        number, fields = message
        local = self._local.get(number)
        if local is None:
            local = len(self._local) % 16
            self._local[number] = local
            self._body += struct.pack("<BBBHB", 0x40 | local, 0, 0, number, len(fields))
            for field_number, (code, fmt, _invalid) in fields:
                self._body += struct.pack("<BBB", field_number, struct.calcsize(fmt), code)
        self._body += struct.pack("<B", local)
        for field_number, (_code, fmt, invalid) in fields:
            value = values.get(field_number)
            if value is None:
                encoded = invalid
            else:
                encoded = round(value)
                limit = (1 << (8 * struct.calcsize(fmt))) - 1
                if not 0 <= encoded < limit:  # the top value is the "invalid" marker
                    encoded = invalid
            self._body += struct.pack("<" + fmt, encoded)

    def to_bytes(self) -> bytes:
        header = struct.pack("<BBHI4s", 14, FIT_PROTOCOL_VERSION, FIT_PROFILE_VERSION,
                             len(self._body), b".FIT")
        header += struct.pack("<H", fit_crc(header))
        data = header + bytes(self._body)
        return data + struct.pack("<H", fit_crc(data))


def fit_time(moment: datetime.datetime) -> int:
    return int((moment - FIT_EPOCH).total_seconds())


def _mps(kmh: float | None, scale: float = 1000.0) -> float | None:
    return None if kmh is None else kmh / 3.6 * scale


def export_fit(activity: Activity, sport: str = "walking") -> bytes:
    """The activity as a FIT activity file (bytes)."""
    if sport not in SPORTS:
        raise ExportError(f"unknown sport {sport!r}: use one of {', '.join(SPORTS)}")
    sport_code = SPORTS[sport]
    w = FitWriter()
    start = fit_time(activity.start)
    end = fit_time(activity.at(activity.elapsed_s))
    w.write(FILE_ID, {0: 4, 1: MANUFACTURER_DEVELOPMENT, 2: 0, 3: None, 4: start})
    w.write(EVENT, {253: start, 0: EVENT_TIMER, 1: EVENT_TYPE_START, 4: 0})

    # One record per whole second (the last sample of that second).
    by_second: dict[int, Sample] = {}
    for s in activity.samples:
        by_second[fit_time(activity.at(s.t))] = s
    seconds = sorted(by_second)
    # Each lap message follows its records: it is written before the first record of a
    # later second than its end (the last lap after all the records).
    pending = list(activity.laps)
    for second in seconds:
        while len(pending) > 1 and fit_time(activity.at(pending[0].end_t)) < second:
            _write_lap(w, activity, pending.pop(0), sport_code)
        s = by_second[second]
        w.write(RECORD, {253: second,
                         5: None if s.distance_m is None else s.distance_m * 100,
                         6: _mps(s.speed_kmh), 73: _mps(s.speed_kmh),
                         3: s.heart_rate_bpm})
    for lap in pending:
        _write_lap(w, activity, lap, sport_code)

    w.write(EVENT, {253: end, 0: EVENT_TIMER, 1: EVENT_TYPE_STOP_ALL, 4: 0})
    hrs = activity.heart_rates
    elapsed_ms = activity.elapsed_s * 1000
    avg_kmh = (activity.distance_m / 1000 / (activity.elapsed_s / 3600)
               if activity.elapsed_s > 0 else None)
    w.write(SESSION, {254: 0, 253: end, 0: EVENT_SESSION, 1: EVENT_TYPE_STOP, 2: start,
                      5: sport_code, 6: SUB_SPORT_TREADMILL, 7: elapsed_ms, 8: elapsed_ms,
                      9: activity.distance_m * 100, 14: _mps(avg_kmh),
                      15: _mps(activity.max_speed_kmh),
                      16: round(sum(hrs) / len(hrs)) if hrs else None,
                      17: max(hrs) if hrs else None,
                      25: 0, 26: len(activity.laps), 28: 0})
    local_offset = activity.start.astimezone().utcoffset() or datetime.timedelta(0)
    w.write(ACTIVITY, {253: end, 0: elapsed_ms, 1: 1, 2: 0, 3: EVENT_ACTIVITY,
                       4: EVENT_TYPE_STOP, 5: end + int(local_offset.total_seconds())})
    return w.to_bytes()


def _write_lap(w: FitWriter, activity: Activity, lap: Lap, sport_code: int) -> None:
    last = lap.index == len(activity.laps) - 1
    ms = lap.duration_s * 1000
    w.write(LAP, {254: lap.index, 253: fit_time(activity.at(lap.end_t)), 0: EVENT_LAP,
                  1: EVENT_TYPE_STOP, 2: fit_time(activity.at(lap.start_t)), 7: ms, 8: ms,
                  9: lap.distance_m * 100, 13: _mps(lap.avg_speed_kmh),
                  14: _mps(lap.max_speed_kmh), 15: lap.avg_heart_rate_bpm,
                  16: lap.max_heart_rate_bpm,
                  24: LAP_TRIGGER_SESSION_END if last else LAP_TRIGGER_MANUAL,
                  25: sport_code, 39: SUB_SPORT_TREADMILL})


# --------------------------------------------------------------------------- TCX
TCX_NS = "http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2"
TCX_EXT_NS = "http://www.garmin.com/xmlschemas/ActivityExtension/v2"
TCX_SCHEMA_LOCATION = (f"{TCX_NS} http://www.garmin.com/xmlschemas/"
                       "TrainingCenterDatabasev2.xsd")


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def export_tcx(activity: Activity, sport: str = "walking") -> str:
    """The activity as Training Center XML (TCX v2). Sport is Running or Other."""
    tcx_sport = "Running" if sport == "running" else "Other"
    out: list[str] = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<TrainingCenterDatabase xmlns="{TCX_NS}" xmlns:ns3="{TCX_EXT_NS}" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:schemaLocation="{TCX_SCHEMA_LOCATION}">',
        "  <Activities>",
        f'    <Activity Sport="{tcx_sport}">',
        f"      <Id>{_iso(activity.start)}</Id>",
    ]
    for lap in activity.laps:
        out.append(f'      <Lap StartTime="{_iso(activity.at(lap.start_t))}">')
        out.append(f"        <TotalTimeSeconds>{lap.duration_s:.1f}</TotalTimeSeconds>")
        out.append(f"        <DistanceMeters>{lap.distance_m:.1f}</DistanceMeters>")
        if lap.max_speed_kmh is not None:
            out.append(f"        <MaximumSpeed>{lap.max_speed_kmh / 3.6:.3f}</MaximumSpeed>")
        out.append("        <Calories>0</Calories>")
        if lap.avg_heart_rate_bpm and lap.max_heart_rate_bpm:
            out.append("        <AverageHeartRateBpm><Value>"
                       f"{lap.avg_heart_rate_bpm}</Value></AverageHeartRateBpm>")
            out.append("        <MaximumHeartRateBpm><Value>"
                       f"{lap.max_heart_rate_bpm}</Value></MaximumHeartRateBpm>")
        out.append("        <Intensity>Active</Intensity>")
        out.append("        <TriggerMethod>Manual</TriggerMethod>")
        inside = [s for s in activity.samples if lap.start_t <= s.t < lap.end_t
                  or (lap.index == len(activity.laps) - 1 and s.t == lap.end_t)]
        if inside:
            out.append("        <Track>")
            for s in inside:
                out.append("          <Trackpoint>")
                out.append(f"            <Time>{_iso(activity.at(s.t))}</Time>")
                if s.distance_m is not None:
                    out.append(f"            <DistanceMeters>{s.distance_m:.1f}</DistanceMeters>")
                if s.heart_rate_bpm:
                    out.append("            <HeartRateBpm><Value>"
                               f"{s.heart_rate_bpm}</Value></HeartRateBpm>")
                if s.speed_kmh is not None:
                    out.append(f"            <Extensions><ns3:TPX><ns3:Speed>"
                               f"{s.speed_kmh / 3.6:.3f}</ns3:Speed></ns3:TPX></Extensions>")
                out.append("          </Trackpoint>")
            out.append("        </Track>")
        out.append(f"        <Notes>{escape(f'{lap.label} ({lap.direction})')}</Notes>")
        out.append("      </Lap>")
    notes = (f"{activity.name}: {activity.outcome}, "
             f"{activity.backward_s / 60:.1f} min backward (retrotread)")
    out.append(f"      <Notes>{escape(notes)}</Notes>")
    out += ["    </Activity>", "  </Activities>", "</TrainingCenterDatabase>", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------- CSV
CSV_COLUMNS = ("time_s", "wall_time", "speed_kmh", "speed_mph", "distance_m",
               "heart_rate_bpm", "target_kmh", "facing", "lap", "segment")


def export_csv(activity: Activity) -> str:
    """One row per telemetry sample; empty cells where a value is unknown."""
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
            s.facing, lap.index + 1, lap.label,
        ])
    return buffer.getvalue()


# --------------------------------------------------------------------------- CLI
def export_session(records: Sequence[Record], fmt: str, sport: str = "walking") -> bytes:
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


def run_export(args: argparse.Namespace) -> int:
    sid, records = resolve_session(args.session, args.dir)
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


