#!/bin/sh
# Trim the debootstrap rootfs given as $1 before it is imported as the shared
# stand-in base.  Nothing here is used by the stand-ins at run time; dropping it
# roughly halves the import and keeps the overlay layers small.
set -eu
root="$1"
rm -rf \
    "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/cache/apt/*.bin \
    "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* \
    "$root"/usr/share/man/* \
    "$root"/usr/share/info/* \
    "$root"/usr/share/javascript/moment-timezone/data
# Message translations only; locale.alias (a file) stays for localedef.
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
# Debian's caddy package takes uid/gid 999, which upstream's postgres and redis images use;
# the caddy stand-in runs as the platform's uid, so the account is not needed.
chroot "$root" userdel caddy
rm -rf "$root"/var/lib/caddy
