#!/usr/bin/env bash
# apt-install.sh PACKAGE COMMAND WHAT: install a Debian package a group of tests needs.
# Quiet and idempotent: does nothing when COMMAND (or /usr/sbin/COMMAND) is already there;
# a COMMAND ending in .so names a shared library, looked up with ldconfig.
# Never fails the test run: without apt (or without rights) it prints a warning and exits 0;
# those tests then skip with a reason locally, and fail in CI (CI=true).
set -u
package="$1"
command_name="$2"
what="$3"

have_it() {
    case "$command_name" in
        *.so) ldconfig -p 2>/dev/null | grep -q "$command_name" ;;  # a library, not a command
        *) command -v "$command_name" >/dev/null 2>&1 || [ -x "/usr/sbin/$command_name" ] ;;
    esac
}

if have_it; then
    exit 0
fi

warn() {
    echo "install-$package: $*; $what will be skipped (CI=true: they fail)" >&2
    exit 0
}

command -v apt-get >/dev/null 2>&1 || warn "$package is not installed and apt-get is not available"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        warn "$package is not installed and installing it needs root (sudo apt-get install $package)"
    fi
fi

echo "install-$package: installing $package with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -qq "$package" >/dev/null 2>&1; then
    # The package lists may be missing or stale (fresh containers): refresh once, retry.
    $SUDO apt-get update -qq >/dev/null 2>&1 || true
    $SUDO apt-get install -y -qq "$package" >/dev/null 2>&1 || warn "apt-get install $package failed"
fi

have_it || warn "$command_name is still not on PATH after installing $package"
exit 0
