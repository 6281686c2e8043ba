#!/usr/bin/env bash
# Install Debian's chromium for the companion page's browser tests (Playwright drives it
# through executable_path; no browser is downloaded). See apt-install.sh.
exec "$(dirname "$0")/apt-install.sh" chromium chromium "the companion browser tests"
