#!/bin/sh
# Mimics the official redis image's docker-entrypoint.sh.
set -e

# First argument is an option (`--appendonly yes`) or a config file.
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
	set -- redis-server "$@"
fi

# Started as root: fix ownership of the data directory, then drop to redis
# (upstream uses setpriv too).
if [ "$1" = 'redis-server' ] && [ "$(id -u)" = '0' ]; then
	find . \! -user redis -exec chown redis '{}' +
	exec setpriv --reuid=redis --regid=redis --clear-groups -- "$0" "$@"
fi

# Upstream compiles redis with protected mode off so that other containers
# can connect without a password; Debian's build keeps it on.  Restore the
# upstream default unless a config file (second argument) decides.
if [ "$1" = 'redis-server' ] && { [ -z "${2:-}" ] || [ "${2#-}" != "$2" ]; }; then
	shift
	set -- redis-server --protected-mode no "$@"
fi

# Like upstream: tighten the default umask so dumps are not world-readable.
if [ "$(umask)" = '0022' ]; then
	umask 0077
fi

exec "$@"
