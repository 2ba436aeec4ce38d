#!/bin/bash
# What the scripts of tools/ share; each sources it near its top:
#
#   # shellcheck source-path=SCRIPTDIR
#   . "$(dirname "$0")/lib.sh"
#
# It sets top (the checkout), prog (the script's name, the prefix of its
# messages) and cache (STORMPOOL_CACHE, default /var/cache/stormpool), and
# defines
#   log, say, die        messages "<script>: ..." (on stderr, stdout; die
#                        says "<script>: error: ..." and exits 1)
#   release_get, release_column, release_oldest, release_list
#                        queries of the release table, tools/releases
#   count_files, newest_file
#                        globs' matches, counted or the newest one
#   cached_root          a Debian root made by mmdebstrap, cached in $cache
# A change here can change what tools/build-libvirt builds: it is part of
# that build's key (inputs_hash), as tools/releases is.

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prog=${0##*/}
cache=${STORMPOOL_CACHE:-/var/cache/stormpool}

# --- messages ------------------------------------------------------------------

# "<script>: MESSAGE" on stderr.
log() { printf '%s: %s\n' "$prog" "$*" >&2; }
# "<script>: MESSAGE" on stdout, for the scripts whose progress goes there.
say() { printf '%s: %s\n' "$prog" "$*"; }
# "<script>: error: MESSAGE" on stderr, then exit 1. A script whose errors
# read "<script>: MESSAGE" sets die_tag= after sourcing this file.
die_tag="error: "
die() { printf '%s: %s%s\n' "$prog" "$die_tag" "$*" >&2; exit 1; }

# --- the release table -----------------------------------------------------------

release_table="$top/tools/releases"

# The awk program's start: skips comments and blank lines, reads the column
# names from the header line into col[] and fails (status 2) on a column
# the table lacks; the variables key and want name the columns used.
# shellcheck disable=SC2016  # awk's $i and $0, not the shell's
release_awk='
    { sub(/#.*/, "") }
    NF == 0 { next }
    !header {
        header = 1
        for (i = 1; i <= NF; i++) col[$i] = i
        if (!(key in col) || !(want in col)) {
            printf "tools/releases has no column %s\n", (key in col) ? want : key > "/dev/stderr"
            bad = 1
            exit 2
        }
        next
    }'

# release_get COLUMN VALUE WANTED: the WANTED column of the release whose
# COLUMN is VALUE, e.g. 'release_get suite trixie libvirt' prints 11.3.0.
# Prints nothing and returns 1 if no release has it.
release_get() {
    awk -v key="$1" -v value="$2" -v want="$3" "$release_awk"'
        $col[key] == value { print $col[want]; found = 1; exit }
        END { if (!bad) exit !found }' "$release_table"
}

# release_column COLUMN: that column of every release, oldest first, one
# a line.
release_column() {
    awk -v key="$1" -v want="$1" "$release_awk"'
        { print $col[want] }' "$release_table"
}

# release_oldest COLUMN: that column of the oldest release (the first line).
release_oldest() {
    release_column "$1" | sed -n 1p
}

# release_list COLUMN SEPARATOR: that column of every release, oldest
# first, on one line, SEPARATOR between them ('bookworm or trixie').
release_list() {
    local values
    values=$(release_column "$1")
    printf '%s\n' "${values//$'\n'/$2}"
}

# --- files ---------------------------------------------------------------------

# count_files FILE...: how many of the FILEs exist (a glob that matches
# nothing stays a word of its own that names no file: 0).
count_files() {
    local f n=0
    for f in "$@"; do
        if [ -e "$f" ]; then n=$((n + 1)); fi
    done
    echo "$n"
}

# newest_file FILE...: the one of the existing FILEs whose name sorts last
# by version (sort -V: libvirt_9.0.0-4+deb12u2.dsc after -4.dsc); nothing
# if none exists.
newest_file() {
    local f
    for f in "$@"; do
        if [ -e "$f" ]; then printf '%s\n' "$f"; fi
    done | sort -V | tail -n1
}

# --- Debian roots ------------------------------------------------------------------

# cached_root NAME RELEASE KEY_INPUTS WHAT VARIANT [MMDEBSTRAP_OPTION...]
#
# A root of Debian RELEASE (a suite) made by mmdebstrap --variant=VARIANT
# with the options given, from the system's own Debian sources
# (tools/release-sources), as a tarball $cache/NAME-RELEASE-KEY.tar.zst;
# prints its path. KEY is a hash of KEY_INPUTS (text: a recipe number, the
# packages, ... whatever the options make of the root) and of the release's
# sources, so that the root is made again when one of them changes, and
# only then. WHAT names it in messages ("the trixie build root").
cached_root() {
    local name=$1 release=$2 key_inputs=$3 what=$4 variant=$5 key tarball tmp
    shift 5
    key=$( { printf '%s\n' "$key_inputs"; "$top/tools/release-sources" "$release"; } |
           sha256sum | cut -c1-16)
    tarball="$cache/$name-$release-$key.tar.zst"
    if [ -f "$tarball" ]; then echo "$tarball"; return 0; fi
    log "making the $release $what (mmdebstrap; cached as $(basename "$tarball"))"
    tmp=$(mktemp -d "/var/tmp/stormpool-$name.XXXXXX")
    "$top/tools/release-sources" "$release" > "$tmp/sources.list"
    mmdebstrap --mode=root --variant="$variant" --quiet \
        --aptopt='Acquire::Check-Valid-Until "false"' \
        --aptopt='Acquire::Languages "none"' \
        --aptopt='APT::Install-Recommends "false"' \
        "$@" \
        "$release" "$tmp/root.tar.zst" "$tmp/sources.list" > "$tmp/mmdebstrap.log" 2>&1 ||
        { tail -n 30 "$tmp/mmdebstrap.log" >&2; rm -rf "$tmp"; die "mmdebstrap of the $release $what failed"; }
    mkdir -p "$cache"
    mv "$tmp/root.tar.zst" "$tarball.tmp"
    mv "$tarball.tmp" "$tarball"
    rm -rf "$tmp"
    echo "$tarball"
}
