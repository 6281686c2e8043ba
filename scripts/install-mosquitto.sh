#!/usr/bin/env bash
# Install the Mosquitto broker (and mosquitto_passwd) for the MQTT integration tests.
# See apt-install.sh.
exec "$(dirname "$0")/apt-install.sh" mosquitto mosquitto "the MQTT broker tests"
