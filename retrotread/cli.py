"""The ``retrotread`` command line: a thin shell over the library.

Every command is a few lines calling the public API; errors of ours (bad profile, bad
device string, a treadmill that refuses) print one clear message and exit non-zero with
no traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from retrotread import __version__
from retrotread.errors import (
    ConfigError,
    ProfileError,
    RetrotreadError,
    SafetyError,
    UsageError,
    VoiceUnavailableError,
)

if TYPE_CHECKING:
    from retrotread.devices import DeviceSpec

EXIT_USAGE = 2

DESCRIPTION = """\
Guided backward-walking ("retro walking") interval workouts on FTMS smart treadmills.

Walking backward is blind: retrotread caps backward speed at 2.0 mph, ramps every speed
change, stops the belt for every turnaround, and stops it whenever anything goes quiet
or wrong. The hardware safety key is still the only true emergency stop: clip it on.
"""

EPILOG = """\
examples:
  retrotread profiles                                    # the bundled profiles
  retrotread run first-session                           # on the built-in simulator
  retrotread run intervals --speedup 30                  # a fast demo
  retrotread run my-profile.yaml                         # your own profile (a path)
  retrotread plan intervals --units km/h                 # what a profile will do
  retrotread validate profiles/*.yaml                    # check hand-edited profiles
  retrotread sim --port 36866                            # serve the simulator over TCP
  retrotread run profiles/intervals.yaml --device dircon://127.0.0.1:36866
  retrotread history                                     # past sessions
  retrotread export last --format fit                    # for Garmin Connect or Strava
  retrotread plot last -o last.png                       # planned vs measured speed
  retrotread next -o next.yaml                           # the next session, from history
  retrotread config                                      # defaults from config.toml, env
  retrotread run profiles/first-session.yaml --voice-stop  # also stop by saying "stop"
"""


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run", help="run a guided workout",
        description="Run a guided workout from a YAML profile. The built-in simulated "
        "treadmill is the default device, so you can try every profile without hardware.",
        epilog="keys during a workout: space pause/resume, r ready, s or q stop, "
        "+ and - adjust speed (within the safety envelope), n skip segment.\n"
        "defaults for --device, --units, --backward-max, --voice, --ready and --mqtt come "
        "from ~/.config/retrotread/config.toml and RETROTREAD_<KEY> variables (the command "
        "line wins); see `retrotread config`.\n"
        "exit status: 0 completed or stopped by you, 3 stopped by the watchdog or the "
        "safety key, 130 interrupted, 1 error, 2 bad input.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("profile", metavar="PROFILE",
                   help="a bundled profile by name (see `retrotread profiles`), e.g. "
                   "first-session, or the path of a YAML file")
    p.add_argument("--device", default=None, metavar="DEVICE",
                   help="sim (default), sim:PRESET (generic, walking-pad, home-treadmill, "
                   "coarse, strict-control), dircon://HOST:PORT, or ble:ADDRESS_OR_NAME")
    p.add_argument("--speedup", type=_positive_float, default=1.0, metavar="N",
                   help="play a simulated workout N times faster (demo; simulator only)")
    p.add_argument("--log", type=Path, default=None, metavar="PATH",
                   help="session log (JSON Lines); default: a new file in the user data dir")
    p.add_argument("--no-ui", action="store_true",
                   help="print one line per event instead of the live display "
                   "(automatic when stdout is not a terminal)")
    p.add_argument("--units", choices=["mph", "km/h"], default=None,
                   help="units shown first and spoken (screens show both; default mph)")
    p.add_argument("--voice", action=argparse.BooleanOptionalAction, default=None,
                   help="speak cues with espeak-ng (default: on for a real machine, off for "
                   "the simulator)")
    p.add_argument("--quiet", action="store_true",
                   help="do not speak cues on this computer (the companion page still can)")
    p.add_argument("--companion", action=argparse.BooleanOptionalAction, default=None,
                   help="serve the companion page, a phone or tablet screen with voice and "
                   "STOP/PAUSE buttons for someone facing away from the console (default: "
                   "on for a real machine, off for the simulator); the URL and a QR code "
                   "are printed at start")
    p.add_argument("--companion-bind", default=None, metavar="HOST[:PORT]",
                   help="address of the companion page (default: all interfaces, port "
                   "8421 or the next free one)")
    p.add_argument("--companion-required", action="store_true",
                   help="make the companion page part of the safety chain: while the belt "
                   "moves, losing every paired page for more than 3 s pauses it")
    p.add_argument("--no-bell", action="store_true", help="do not ring the terminal bell")
    p.add_argument("--name", default=None, metavar="NAME",
                   help="this treadmill's name, shown on every screen; with several "
                   "treadmills on one MQTT broker each publishes under retrotread/NAME as its "
                   "own Home Assistant device (a name already in use there is refused)")
    p.add_argument("--backward-max", type=float, default=None, metavar="MPH",
                   help="lower the backward speed cap (1.0 to 2.0 mph; it can never be raised)")
    p.add_argument("--ready", choices=["key", "hold"], default=None,
                   help="turnaround ready gate: wait for the r key, or a timed hold")
    p.add_argument("--mqtt", default=None, metavar="URL",
                   help="publish telemetry to an MQTT broker (mqtt://host:port or mqtts://); "
                   "credentials from RETROTREAD_MQTT_USERNAME/PASSWORD or the config file")
    p.add_argument("--mqtt-config", type=Path, default=None, metavar="FILE",
                   help="TOML file with an [mqtt] table")
    p.add_argument("--hr-strap", default=None, metavar="STRAP",
                   help="heart rate from a Bluetooth strap (Heart Rate Service): "
                   "ble:ADDRESS_OR_NAME, or sim (a simulated strap, with --device sim); "
                   "it replaces the treadmill's own heart rate")
    p.add_argument("--voice-stop", action="store_true",
                   help="also stop the belt when you say \"stop\" (offline: each short "
                   "utterance is transcribed by speech recognition, or where that does not "
                   "install, keyword spotting checks each word; needs pip install "
                   "'retrotread[voice]' and a microphone; about 2 s to load). It adds to the "
                   "safety key and the stop key, never replaces them")
    p.add_argument("--mic", default=None, metavar="NAME|INDEX",
                   help="with --voice-stop: the microphone, by index or part of its name "
                   "(see retrotread mics; default: the system's default input)")


def _add_sim(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from retrotread.sim.presets import PRESETS

    presets = "; ".join(f"{name}: {preset.description}" for name, preset in PRESETS.items())
    p = sub.add_parser(
        "sim", help="serve the simulated treadmill over FTMS/TCP (Direct Connect) or BLE",
        description="Serve the simulated treadmill over FTMS in the Wahoo Direct Connect "
        "framing, so retrotread (--device dircon://HOST:PORT) or any other app that speaks "
        "it can drive it; with --ble, advertise it as a Bluetooth LE FTMS peripheral on a "
        f"dedicated dongle (--device ble:NAME, or any FTMS app). Presets: {presets}.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=36866, help="TCP port (default 36866)")
    p.add_argument("--preset", default="generic", choices=sorted(PRESETS),
                   help="machine preset (default generic)")
    p.add_argument("--noise", type=float, default=0.03, metavar="KMH",
                   help="standard deviation of reported speed noise (default 0.03 km/h)")
    p.add_argument("--mdns", action="store_true",
                   help="advertise over mDNS as _wahoo-fitness-tnp._tcp (needs a network)")
    p.add_argument("--telemetry-hz", type=float, default=1.0,
                   help="Treadmill Data rate (default 1 Hz)")
    p.add_argument("--log-requests", action="store_true",
                   help="print every control point request the simulator receives")
    p.add_argument("--ble", action="store_true",
                   help="advertise as a Bluetooth LE FTMS peripheral instead of serving TCP "
                   "(needs Bumble: pip install 'retrotread[ble-sim]', and a dongle the OS "
                   "does not use; see hardware/README.md)")
    p.add_argument("--transport", default=None, metavar="TRANSPORT",
                   help="with --ble: the Bumble transport of the controller, e.g. usb:0, "
                   "usb:2fe3:000b, hci-socket:0, serial:/dev/ttyACM0 "
                   "(default $RETROTREAD_BLE_TRANSPORT or usb:0)")
    p.add_argument("--name", default="retrotread sim",
                   help="with --ble: the advertised name (default 'retrotread sim')")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retrotread", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"retrotread {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_run(sub)
    _add_sim(sub)
    p = sub.add_parser("validate", help="check profile files",
                       description="Check workout profiles; one line per problem with "
                       "file:line:column and the field. Exit status 2 if any is invalid.")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE",
                   help="profile files (YAML) to check")
    p = sub.add_parser("schema", help="print the profile JSON Schema (for editors)",
                       description="Print the JSON Schema of workout profiles. Save it and "
                       "add this first line to a profile for completion and checks in editors "
                       "that use the YAML language server:\n"
                       "  # yaml-language-server: $schema=PATH/TO/profile.schema.json",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", type=Path, default=None, help="write to a file")
    p = sub.add_parser("plan", help="show what a profile will do, as a table",
                       description="Compile a profile into its plan (ramps and turnarounds "
                       "inserted, every speed inside the safety envelope) and print it.")
    p.add_argument("profile", metavar="PROFILE", help="a bundled profile's name or a path")
    p.add_argument("--units", choices=["mph", "km/h"], default=None,
                   help="units shown first (both are always shown; default mph)")
    p.add_argument("--device", default="sim", metavar="DEVICE",
                   help="quantize for this simulator preset's speed range (sim:PRESET)")
    p.add_argument("--backward-max", type=float, default=None, metavar="MPH",
                   help="lower the backward speed cap (1.0 to 2.0 mph; it can never be raised)")
    p = sub.add_parser("profiles", help="list the bundled profiles",
                       description="The profiles that come with retrotread: name, level, total "
                       "and backward minutes. Run one by name: retrotread run NAME.")
    p = sub.add_parser("config", help="show the effective settings and where each came from",
                       description="Defaults for `run` come from the config file "
                       "(~/.config/retrotread/config.toml, or $RETROTREAD_CONFIG), then "
                       "RETROTREAD_<KEY> variables, then the command line, each beating the "
                       "one before. This prints every setting and where it came from; a bad "
                       "file gets file:line: key: message and exit status 2. A setting can "
                       "only lower a safety limit (backward_max 1.0 to 2.0 mph).")
    p.add_argument("--path", action="store_true", help="print only the config file's path")
    p = sub.add_parser("mics", help="list the microphones --voice-stop can use",
                       description="List audio inputs (index, name, channels, default rate; "
                       "* marks the system's default). Give the index or part of the name to "
                       "run --voice-stop --mic.")
    _add_after_workout(sub)
    _add_device_commands(sub)
    return parser


def _add_after_workout(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """history, export, plot, next: reading the session logs (docs/after-the-workout.md)."""
    from retrotread import export, history, plot, progression

    p = sub.add_parser("history", help="list past sessions from the session logs",
                       description="Past sessions, oldest first: date, profile, machine (real, "
                       "sim, or sim Nx for a sped-up demo), time, backward minutes, distance, "
                       "and how each ended (running while another terminal runs it). The ids "
                       "work with export and plot.")
    history.add_history_arguments(p)
    p.set_defaults(handler=history.run_history)
    p = sub.add_parser("export", help="export a session as FIT, TCX or CSV",
                       description="Export a session for Garmin Connect, Strava and others (FIT "
                       "or TCX, one lap per segment) or for a spreadsheet (CSV).")
    export.add_export_arguments(p)
    p.set_defaults(handler=export.run_export)
    p = sub.add_parser("plot", help="plot planned vs measured speed (PNG, SVG, PDF, JPEG)",
                       description="Plot a profile's plan, or a session's measured speed over "
                       "the plan as it was followed: backward walking shaded, pauses as gaps, "
                       "skips as jumps, turnarounds marked, the stop named by who or what made "
                       "it (you, a remote, the watchdog).")
    plot.add_plot_arguments(p)
    p.set_defaults(handler=plot.run_plot)
    p = sub.add_parser("next", help="write the next session's profile from your history",
                       description="Write the next session's profile from the history: add "
                       "backward time gradually up to a goal, hold after a session that was cut "
                       "short, step back after a long gap (profiles/rules/progression.yaml).")
    progression.add_next_arguments(p)
    p.set_defaults(handler=progression.run_next)


def _add_device_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """scan, doctor (bleak) and monitor (aiomqtt): core dependencies, always listed."""
    from retrotread import doctor as doctor_module
    from retrotread import mqtt as mqtt_module
    from retrotread import scan as scan_module

    p = sub.add_parser("scan", help="find FTMS treadmills nearby over Bluetooth LE")
    scan_module.add_scan_arguments(p)
    p.set_defaults(handler=scan_module.run_scan)
    p = sub.add_parser("doctor", help="probe a treadmill and suggest a quirk file")
    doctor_module.add_doctor_arguments(p)
    p.set_defaults(handler=doctor_module.run_doctor)
    p = sub.add_parser("monitor", help="watch a remote session over MQTT (read-only)",
                       description="Follow a session running on another computer: its state, "
                       "speeds and events as the running session publishes them over MQTT "
                       "(run --mqtt URL). Read-only: monitor sends no commands.")
    mqtt_module.add_monitor_arguments(p)
    p.set_defaults(handler=mqtt_module.run_monitor)


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def cmd_validate(args: argparse.Namespace) -> int:
    from retrotread.profile import load_profile

    status = 0
    for path in args.files:
        try:
            profile = load_profile(path)
        except ProfileError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            status = EXIT_USAGE
        else:
            print(f"{path}: ok ({profile.name})")
    return status


def cmd_schema(args: argparse.Namespace) -> int:
    from retrotread.profile import profile_json_schema

    text = json.dumps(profile_json_schema(), indent=2) + "\n"
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from retrotread.config import command_line_values, load_config
    from retrotread.devices import parse_device
    from retrotread.envelope import MachineLimits
    from retrotread.plan import compile_plan, format_plan_table
    from retrotread.profile import load_profile
    from retrotread.resources import find_profile
    from retrotread.runner import build_envelope
    from retrotread.sim.presets import PRESETS

    run = load_config(command_line=command_line_values(args)).run
    profile = load_profile(find_profile(args.profile))
    device = parse_device(args.device)
    if device.kind == "sim":
        preset = PRESETS[device.target]
        machine = MachineLimits(preset.min_kmh, preset.max_kmh, preset.increment_kmh)
    else:
        machine = MachineLimits()
    envelope = build_envelope(profile, machine, run.backward_max)
    plan = compile_plan(profile, envelope)
    print(format_plan_table(plan, units=run.units))
    return 0


def parse_strap(text: str) -> DeviceSpec:
    """``--hr-strap``: ``sim`` or ``ble:ADDRESS_OR_NAME``."""
    from retrotread.devices import DeviceSpec, parse_device
    from retrotread.errors import DeviceSpecError

    value = text.strip()
    if value == "sim":
        return DeviceSpec("sim", "strap")
    if value.startswith("ble:"):
        return parse_device(value)
    raise DeviceSpecError(f"cannot understand --hr-strap {text!r}: use ble:ADDRESS_OR_NAME "
                          "or sim")


def _companion_problem(args: argparse.Namespace, simulated: bool,
                       companion_setting: bool | None = None) -> str | None:
    """Bad companion options (exit status 2), before anything starts."""
    from retrotread.companion import parse_bind

    if args.companion_bind is not None:
        try:
            parse_bind(args.companion_bind)
        except RetrotreadError as exc:
            return str(exc)
    chosen = args.companion if args.companion is not None else companion_setting
    companion = chosen if chosen is not None else not simulated
    if args.companion_required and not companion:
        return ("--companion-required needs the companion page: add --companion "
                "(it is off by default for the simulator)" if chosen is None else
                "--companion-required needs the companion page: drop --no-companion")
    return None


def cmd_mics(args: argparse.Namespace) -> int:
    from retrotread.voice.audio import list_inputs

    inputs = list_inputs()
    if not inputs:
        print("no audio inputs found", file=sys.stderr)
        return EXIT_USAGE
    for device in inputs:
        print(device)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from retrotread.config import command_line_values, load_config
    from retrotread.devices import parse_device
    from retrotread.resources import find_profile
    from retrotread.runner import RunOptions, run_workout

    if args.mic is not None and not args.voice_stop:
        raise VoiceUnavailableError("--mic only makes sense with --voice-stop")

    config = load_config(command_line=command_line_values(args))  # validates every value
    run = config.run
    device = parse_device(run.device)
    if args.speedup != 1.0 and not device.simulated:
        raise UsageError(f"--speedup only works with the simulator (--device sim), not "
                         f"{device}: a real belt runs in real time")
    strap = parse_strap(args.hr_strap) if args.hr_strap is not None else None
    if strap is not None and strap.simulated and not device.simulated:
        raise UsageError("--hr-strap sim only works with the simulator (--device sim); "
                         "use --hr-strap ble:NAME for a real strap")
    profile_path = find_profile(args.profile).resolve()  # the log names it from any folder
    ui = not args.no_ui and sys.stdout.isatty()
    options = RunOptions(
        device=device,
        speedup=args.speedup,
        log_path=args.log,
        ui=ui,
        units=run.units,
        voice=False if args.quiet else run.voice,
        bell=not args.no_bell,
        backward_max_mph=run.backward_max,
        ready_gate=run.ready,
        mqtt_url=run.mqtt,
        name=run.name,
        mqtt_config=args.mqtt_config or config.mqtt_config_file(),
        hr_strap=strap,
        companion=run.companion,
        companion_bind=args.companion_bind,
        companion_required=args.companion_required,
        voice_stop=args.voice_stop,
        mic=args.mic,
    )
    problem = _companion_problem(args, options.device.simulated, run.companion)
    if problem is not None:
        print(f"retrotread: {problem}", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(run_workout(profile_path, options))


def cmd_profiles(args: argparse.Namespace) -> int:
    from retrotread.resources import format_profile_list, list_profiles

    print(format_profile_list(list_profiles()))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from retrotread.config import config_path, format_config, load_config

    if args.path:
        print(config_path())
        return 0
    print(format_config(load_config()))
    return 0


def cmd_sim(args: argparse.Namespace) -> int:
    from retrotread.sim.server import serve, serve_ble

    try:
        if args.ble:
            return asyncio.run(serve_ble(transport=args.transport, name=args.name,
                                         preset=args.preset, noise_kmh=args.noise,
                                         telemetry_hz=args.telemetry_hz,
                                         log_requests=args.log_requests))
        return asyncio.run(serve(host=args.host, port=args.port, preset=args.preset,
                                 noise_kmh=args.noise, mdns=args.mdns,
                                 telemetry_hz=args.telemetry_hz,
                                 log_requests=args.log_requests))
    except KeyboardInterrupt:
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    handlers = {
        "run": cmd_run, "sim": cmd_sim, "validate": cmd_validate, "schema": cmd_schema,
        "plan": cmd_plan, "profiles": cmd_profiles, "config": cmd_config, "mics": cmd_mics,
    }
    handler = handlers.get(args.command)
    if handler is None:
        handler = args.handler  # commands that register their own (scan, monitor)
    try:
        return int(handler(args) or 0)
    except ProfileError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except (SafetyError, UsageError) as exc:
        # bad input, a limit that may not be loosened, a machine unfit for retro walking
        print(f"retrotread: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except VoiceUnavailableError as exc:  # before the belt moves: a setup problem
        print(f"retrotread: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RetrotreadError as exc:
        print(f"retrotread: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("retrotread: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `retrotread plan X | head`
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 0


if __name__ == "__main__":
    sys.exit(main())
