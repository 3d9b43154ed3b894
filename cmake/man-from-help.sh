#!/bin/sh
# man-from-help.sh PROGRAM VERSION [OUT.gz]: a man page (roff, section 1)
# made from PROGRAM --help, printed on stdout or written gzipped to OUT.gz. The help has the shape every Ferry
# binary prints: "usage:" lines, a paragraph, then "options:" with one
# "  --name ARG   text" line per option.
set -eu
prog=$1
version=$2
if [ $# -ge 3 ]; then
  sh "$0" "$prog" "$version" >"$3.tmp"
  gzip -9n <"$3.tmp" >"$3"
  rm -f "$3.tmp"
  exit 0
fi
name=$(basename "$prog")
help=$("$prog" --help)
# NAME: the description's first sentence (the client prints none).
summary=$(printf '%s\n' "$help" | sed -n '2{/./q};3{/^options:$/q;s/\. .*//;s/\.$//;p;q}')
[ -n "$summary" ] || summary="the Ferry command-line client: runs scripts, shows stats, makes keys"

printf '%s\n' "$help" | awk -v name="$name" -v version="$version" -v summary="$summary" '
function esc(s) {
  gsub(/\\/, "\\e", s)
  gsub(/-/, "\\-", s)
  if (s ~ /^[.'\'']/) s = "\\&" s
  return s
}
BEGIN {
  printf ".TH %s 1 \"\" \"ferry %s\" \"User Commands\"\n", toupper(name), version
  section = "synopsis"
}
NR == 1 { first = 1 }
/^options:$/ { print ".SH OPTIONS"; section = "options"; next }
section == "synopsis" && /^$/ {
  if (!done_syn) { print ".fi"; done_syn = 1; section = "description"; print ".SH DESCRIPTION" }
  next
}
section == "synopsis" {
  if (first) { print ".SH NAME"; print esc(name) " \\- " esc(summary); print ".SH SYNOPSIS"; print ".nf"; first = 0 }
  line = $0
  sub(/^usage: /, "", line)
  sub(/^       /, "", line)
  print esc(line)
  next
}
section == "description" { if ($0 != "") print esc($0); else print ".PP"; next }
section == "options" && /^  -/ {
  line = $0
  sub(/^  /, "", line)
  # The option and its argument, then two or more spaces (or one, when the
  # option is long), then the text.
  if (match(line, /^--[a-z0-9-]+( [A-Z]+)?/)) {
    opt = substr(line, 1, RLENGTH)
    text = substr(line, RLENGTH + 1)
    sub(/^ +/, "", text)
  } else { opt = line; text = "" }
  print ".TP"
  print "\\fB" esc(opt) "\\fR"
  print esc(text)
  next
}
section == "options" { print esc($0) }
END { if (!done_syn) print ".fi" }
'
