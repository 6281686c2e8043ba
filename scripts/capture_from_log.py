#!/usr/bin/env python3
"""Turn a public raw trace of a real machine into a retrotread machine capture (JSON).

Used to seed tests/fixtures/machines/ (see docs/machine-captures.md). Two log formats:

* ``nrf``: an nRF Connect for Android log. Notifications become trace entries; the
  values nRF Connect itself decoded for Treadmill Data (speed, distance, elapsed time,
  energy) are kept as each entry's ``reference``, an independent decoding the tests
  compare ours with. The GATT table comes from the log's service listing.
* ``btsnoop``: an Android HCI snoop log (btsnoop, datalink 1001), or
* ``nordic``: a pcapng from the nRF Sniffer for Bluetooth LE (link type 272).
  ATT reads, writes, notifications and indications become reads and trace entries. Such
  logs often hold no service discovery (the phone cached it), so ``--handle HANDLE=UUID``
  says which attribute handle is which characteristic; handles not named are left out.

Only bytes and their times are kept; model names and the source address go in the
capture's ``model`` and ``source``.
"""

from __future__ import annotations

import argparse
import json
import re
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from retrotread import gatt
from retrotread.links.replay import (
    NOTIFY,
    WRITE,
    MachineCapture,
    TraceEntry,
)

_PROPS = {"R": gatt.READ, "W": gatt.WRITE, "WNR": gatt.WRITE, "N": gatt.NOTIFY,
          "I": gatt.INDICATE}
_NRF_TIME = r"(\d\d):(\d\d):(\d\d)\.(\d\d\d)"
_REFERENCE_FIELDS = {
    "Instantaneous Speed": ("speed_kmh", float),
    "Total Distance": ("total_distance_m", int),
    "Elapsed Time": ("elapsed_time_s", int),
    "Total Energy": ("total_energy_kcal", int),
}


def _seconds(match: re.Match[str]) -> float:
    h, m, s, ms = (int(x) for x in match.groups()[:4])
    return h * 3600 + m * 60 + s + ms / 1000


def from_nrf(text: str) -> MachineCapture:
    services: list[gatt.Service] = []
    current: tuple[str, list[gatt.Characteristic]] | None = None
    for line in text.splitlines():
        if line[:1].isspace():  # a descriptor (nRF Connect indents with no-break spaces)
            continue
        service = re.match(r"^(?:V\t\S+\t)?([^-\t ][^(]*)\(0x([0-9A-F]{4})\)$", line)
        char = re.match(r"^- .*\[([A-Z ]+)\] \((?:0x([0-9A-F]{4})|([0-9a-f-]{36}))\)$", line)
        if char and current is not None:
            uuid = gatt.normalize_uuid(char.group(2) or char.group(3))
            props = frozenset(_PROPS[p] for p in char.group(1).split())
            current[1].append(gatt.Characteristic(uuid, props))
        elif service:
            if current is not None:
                services.append(gatt.Service(current[0], tuple(current[1])))
            current = (gatt.normalize_uuid(service.group(2)), [])
        elif current is not None and not line.startswith((" ", "-")) and line.strip():
            services.append(gatt.Service(current[0], tuple(current[1])))
            current = None
    trace: list[TraceEntry] = []
    t0: float | None = None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        note = re.match(r"^I\t" + _NRF_TIME + r"\tNotification received from ([0-9a-f-]{36}), "
                        r"value: \(0x\) ([0-9A-F-]*)$", line)
        if not note:
            continue
        t = _seconds(note)
        t0 = t if t0 is None else t0
        reference: dict[str, float | int] = {}
        for follow in lines[i + 1:i + 12]:
            if follow.startswith("I\t"):
                break
            field = re.match(r'^(?:A\t\S+\t")?([A-Za-z ]+): ([0-9.]+) ', follow)
            if field and field.group(1) in _REFERENCE_FIELDS:
                name, kind = _REFERENCE_FIELDS[field.group(1)]
                reference[name] = kind(field.group(2))
        trace.append(TraceEntry(round(t - t0, 3), NOTIFY, gatt.normalize_uuid(note.group(5)),
                                bytes.fromhex(note.group(6).replace("-", "")), reference))
    return MachineCapture(tuple(services), {}, trace)


def _btsnoop_att(data: bytes):
    if data[:8] != b"btsnoop\0" or struct.unpack(">I", data[12:16])[0] != 1001:
        raise SystemExit("not a btsnoop log with datalink 1001 (un-encapsulated HCI)")
    pos, t0, partial = 16, None, {}
    while pos + 24 <= len(data):
        _orig, incl, flags, _drops, ts = struct.unpack(">IIIIq", data[pos:pos + 24])
        pkt = data[pos + 24:pos + 24 + incl]
        pos += 24 + incl
        if flags & 2:  # HCI command or event
            continue
        sent = not flags & 1
        handle_flags, length = struct.unpack("<HH", pkt[:4])
        acl = pkt[4:4 + length]
        if (handle_flags >> 12) & 3 == 1:  # continuation fragment
            if sent not in partial:
                continue
            cid, need, body = partial.pop(sent)
            body += acl
        else:
            need, cid = struct.unpack("<HH", acl[:4])
            body = acl[4:]
        if len(body) < need:
            partial[sent] = (cid, need, body)
            continue
        if cid != 4:  # not ATT
            continue
        t0 = ts if t0 is None else t0
        yield (ts - t0) / 1e6, sent, body[:need]


def _nordic_att(data: bytes):
    """ATT PDUs from a pcapng of the nRF Sniffer (LINKTYPE_NORDIC_BLE): after the board
    byte, a 6-byte packet header and a 10-byte payload header (flags at offset 8, bit 1
    set for central to peripheral) comes the Link Layer packet."""
    pos, t0, partial = 0, None, {}
    while pos + 8 <= len(data):
        kind, length = struct.unpack("<II", data[pos:pos + 8])
        block = data[pos:pos + length]
        pos += length
        if kind == 1 and struct.unpack("<H", block[8:10])[0] != 272:
            raise SystemExit("not an nRF Sniffer capture (link type 272)")
        if kind != 6:  # Enhanced Packet Block
            continue
        ts_high, ts_low, cap = struct.unpack("<III", block[12:24])
        pkt = block[28:28 + cap]
        ll = pkt[17:]
        if len(ll) < 6 or struct.unpack("<I", ll[:4])[0] == 0x8E89BED6:  # advertising
            continue
        sent = bool(pkt[8] & 2)
        llid, size = ll[4] & 3, ll[5]
        payload = ll[6:6 + size]
        if llid == 2 and len(payload) >= 4:
            need, cid = struct.unpack("<HH", payload[:4])
            body = payload[4:]
        elif llid == 1 and size and sent in partial:
            cid, need, body = partial.pop(sent)
            body += payload
        else:
            continue
        if len(body) < need:
            partial[sent] = (cid, need, body)
            continue
        if cid != 4:
            continue
        ts = (ts_high << 32) | ts_low
        t0 = ts if t0 is None else t0
        yield (ts - t0) / 1e6, sent, body[:need]


def from_att(events, handles: dict[int, str],
             services: list[gatt.Service]) -> MachineCapture:
    """A capture from ATT PDUs ``(t_s, sent by the client, pdu)``."""
    reads: dict[str, bytes] = {}
    trace: list[TraceEntry] = []
    pending_read: int | None = None
    for t, sent, att in events:
        op = att[0]
        if sent and op == 0x0A:  # Read Request
            pending_read = struct.unpack("<H", att[1:3])[0]
        elif not sent and op == 0x0B and pending_read is not None:  # Read Response
            uuid = handles.get(pending_read)
            if uuid is not None and uuid not in reads:
                reads[uuid] = att[1:]
            pending_read = None
        elif sent and op in (0x12, 0x52):  # Write Request / Command
            uuid = handles.get(struct.unpack("<H", att[1:3])[0])
            if uuid is not None:
                trace.append(TraceEntry(round(t, 3), WRITE, uuid, att[3:]))
        elif not sent and op in (0x1B, 0x1D):  # Notification / Indication
            uuid = handles.get(struct.unpack("<H", att[1:3])[0])
            if uuid is not None:
                trace.append(TraceEntry(round(t, 3), NOTIFY, uuid, att[3:]))
    return MachineCapture(tuple(services), reads, trace)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("kind", choices=["nrf", "btsnoop", "nordic"])
    p.add_argument("log", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--handle", action="append", default=[], metavar="HANDLE=UUID",
                   help="btsnoop: attribute handle (hex) of a characteristic value")
    p.add_argument("--props", action="append", default=[], metavar="UUID=PROPS",
                   help="btsnoop: properties of a named characteristic, e.g. 2ad9=write,indicate")
    p.add_argument("--model", default="{}", help="JSON object: manufacturer, model, name")
    p.add_argument("--source", default="{}", help="JSON object: url, note, ...")
    args = p.parse_args()
    if args.kind == "nrf":
        capture = from_nrf(args.log.read_text(encoding="utf-8", errors="replace"))
    else:
        handles = {int(h, 16): gatt.normalize_uuid(u)
                   for h, u in (item.split("=") for item in args.handle)}
        props = {gatt.normalize_uuid(u): frozenset(v.split(","))
                 for u, v in (item.split("=") for item in args.props)}
        by_service: dict[str, list[gatt.Characteristic]] = {}
        for u in dict.fromkeys(handles.values()):
            service = (gatt.DEVICE_INFORMATION_SERVICE if u[4:6] == "2a" and u[4:8] < "2a30"
                       else gatt.FITNESS_MACHINE_SERVICE)
            by_service.setdefault(service, []).append(
                gatt.Characteristic(u, props.get(u, frozenset({gatt.READ}))))
        services = [gatt.Service(s, tuple(c)) for s, c in by_service.items()]
        reader = _btsnoop_att if args.kind == "btsnoop" else _nordic_att
        capture = from_att(reader(args.log.read_bytes()), handles, services)
    capture.model = json.loads(args.model)
    capture.source = json.loads(args.source)
    capture.dump(args.out)
    print(f"{args.out}: {len(capture.trace)} trace entries, {len(capture.reads)} reads")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
