"""Hands-free stop: an offline keyword spotter that turns a spoken "stop" into the same
command as the stop key.

Three thin parts, each replaceable in tests:

* :mod:`~retrotread.voice.audio`: where sound comes from (a microphone through
  sounddevice/PortAudio, or a WAV file / numpy array), one blocking ``read()`` at a time;
* the spotter, audio in, spotted words out (:mod:`~retrotread.voice.default` picks it):
  where Moonshine speech recognition installs (Linux x86-64), :mod:`~retrotread.voice.runs`:
  Silero VAD (:mod:`~retrotread.voice.activity`) finds each short run of speech and
  Moonshine (:mod:`~retrotread.voice.asr`) transcribes it; elsewhere
  :mod:`~retrotread.voice.spotter`: pocketsphinx in keyphrase (KWS) mode, with the English
  model its wheel ships, proposes "stop" and a learned classifier on a pretrained speech
  embedding (:mod:`~retrotread.voice.stopnet`) checks each proposal;
* :mod:`~retrotread.voice.listener`: a thread that reads, gates (not while the session
  itself speaks), spots and hands each detection to the asyncio loop with
  ``call_soon_threadsafe``, so listening can never delay a control tick.

A spoken word can only ever stop (or pause) the belt: :data:`VOICE_COMMANDS` is the closed
set of what the spotter may ask for. Nothing is sent anywhere; no audio is stored.
The optional dependencies are the ``voice`` extra: ``pip install 'retrotread[voice]'``.
"""

from __future__ import annotations

from retrotread.events import UserCommand

VOICE_COMMANDS: dict[str, UserCommand] = {"stop": UserCommand.STOP, "pause": UserCommand.PAUSE}
"""Every word the spotter may listen for, and the command it asks for. Only ever stop or
pause: no spoken word starts, resumes or speeds up the belt."""

EXTRA_HINT = "pip install 'retrotread[voice]'"
