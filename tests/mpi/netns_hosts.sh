#!/bin/sh
# tools/netns/hosts.sh with 2 hosts on reviews made here (tests/mpi/fixtures.sh: 200 per label and split),
# so the several-hosts test runs on a machine without ../shared/data. Skips (77) as hosts.sh does.
# usage: netns_hosts.sh HOSTS_SH ATTN
set -u
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/fixtures.sh"
imdb_fixture "$tmp/data" 200
bash "$1" --hosts 2 "$2" "$tmp/data"
