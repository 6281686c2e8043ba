#!/usr/bin/env bash
# Install espeak-ng (speech for the voice-stop tests and benchmark, and for --voice cues),
# sox (resampling the synthesized speech to the recognizer's 16 kHz) and libportaudio2
# (PortAudio, which sounddevice needs to list and open microphones). See apt-install.sh:
# quiet, idempotent, and never fails the run (the voice tests then fail in CI).
set -u
here="$(dirname "$0")"
"$here/apt-install.sh" espeak-ng espeak-ng "the voice tests"
"$here/apt-install.sh" sox sox "the voice tests"
"$here/apt-install.sh" libportaudio2 libportaudio.so "the voice tests"
