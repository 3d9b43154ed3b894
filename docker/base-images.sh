#!/usr/bin/env bash
# docker/base-images.sh: makes sure the two base images of the Dockerfile,
# debian:bookworm (build stage) and debian:bookworm-slim (runtime stage),
# exist in the local Docker engine, even when no image registry can be
# reached.
#
# In order, for each image: use it if Docker has it already; else
# `docker pull` it; else build it here. Building: debootstrap a minimal
# bookworm (--variant=minbase, which is also what the official debian:bookworm
# is made from) from the Debian mirror that this machine's apt uses, write
# the same apt configuration the official images carry, tar it and
# `docker import` it. The -slim image is the same root file system with the
# official -slim image's dpkg path excludes applied (no docs, man pages or
# locales). The tarballs are cached in $FERRY_DOCKER_CACHE (default
# /var/cache/ferry-docker) so that the next run only imports them.
#
# Environment:
#   FERRY_DOCKER_CACHE   where the root file system tarballs are kept
#   FERRY_DEBIAN_MIRROR  the mirror to debootstrap from (default: the one
#                        apt is configured with for bookworm)
#   FERRY_BASE_REBUILD=1 ignore the images and tarballs already there
#   DOCKER               the docker command (default: docker)
set -euo pipefail

suite=bookworm
cache=${FERRY_DOCKER_CACHE:-/var/cache/ferry-docker}
docker=${DOCKER:-docker}
label=org.ferry.base
here=$(cd "$(dirname "$0")" && pwd)

say() { echo "base-images: $*"; }

have_image() { "$docker" image inspect "$1" >/dev/null 2>&1; }

# The apt source for a suite ("bookworm", "bookworm-security", ...) as apt is
# configured on this machine, or nothing.
apt_site() {
  # shellcheck disable=SC2016 # apt's own $(FIELD) syntax
  apt-get indextargets --format '$(SITE) $(RELEASE) $(IDENTIFIER) $(TARGET_OF)' 2>/dev/null |
    awk -v s="$1" '$2 == s && $3 == "Packages" && $4 == "deb" { print $1; exit }'
}

# The apt configuration of the official Debian images, plus this machine's
# date checks (a snapshot mirror has expired Release files, and if apt here
# is told to accept them, apt in the image must be told too).
write_apt_config() {
  local root=$1 mirror=$2 updates=$3 security=$4
  local conf=$root/etc/apt/apt.conf.d
  cat >"$conf/docker-clean" <<'CONF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CONF
  echo 'Acquire::Languages "none";' >"$conf/docker-no-languages"
  echo 'Acquire::GzipIndexes "true";' >"$conf/docker-gzip-indexes"
  echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$conf/docker-autoremove-suggests"
  local checks
  checks=$(apt-config dump 2>/dev/null | grep -E '^Acquire::Check-(Valid-Until|Date) "false";' || true)
  if [ -n "$checks" ]; then
    echo "$checks" >"$conf/99ferry-host-mirror"
    say "apt in the image skips Release date checks, as apt on this machine does"
  fi

  rm -f "$root/etc/apt/sources.list"
  local suites=$suite
  [ -n "$updates" ] && suites="$suites $suite-updates"
  {
    printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\n' "$mirror" "$suites"
    printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    if [ -n "$security" ]; then
      printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\n' "$security" "$suite"
      printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    fi
  } >"$root/etc/apt/sources.list.d/debian.sources"
}

# What debian:bookworm-slim leaves out, as its /etc/dpkg/dpkg.cfg.d/docker says.
make_slim() {
  local root=$1
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'CONF'
# This is the "slim" variant of the Debian base image (made by docker/base-images.sh).
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
CONF
  find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$root"/usr/share/{groff,info,linda,lintian,man}/*
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
}

# Debootstraps once and writes both tarballs into the cache.
build_tarballs() {
  local mirror=${FERRY_DEBIAN_MIRROR:-$(apt_site "$suite")}
  mirror=${mirror:-http://deb.debian.org/debian}
  local updates security
  updates=$(apt_site "$suite-updates")
  security=$(apt_site "$suite-security")
  local work
  work=$(mktemp -d /var/tmp/ferry-debootstrap-XXXXXX)
  if ! command -v debootstrap >/dev/null; then
    say "installing debootstrap"
    if ! NEEDRESTART_SUSPEND=1 "$here/../scripts/install-deps.sh" debootstrap >"$work/apt.log" 2>&1; then
      tail -n 20 "$work/apt.log" >&2
      rm -rf "$work"
      return 1
    fi
  fi
  # shellcheck disable=SC2064 # expand now: $work is local
  trap "rm -rf '$work'" EXIT
  local root=$work/root
  say "debootstrap --variant=minbase $suite from $mirror (log: $work/debootstrap.log)"
  if ! debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 30 "$work/debootstrap.log" >&2
    say "debootstrap failed" >&2
    return 1
  fi
  write_apt_config "$root" "$mirror" "$updates" "${security}"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/tmp/* \
    "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/var/cache/debconf/*-old
  : >"$root/etc/machine-id"
  mkdir -p "$cache"
  tar -C "$root" --numeric-owner --xattrs -cf "$cache/$suite.tar.tmp" .
  mv "$cache/$suite.tar.tmp" "$cache/$suite.tar"
  make_slim "$root"
  tar -C "$root" --numeric-owner --xattrs -cf "$cache/$suite-slim.tar.tmp" .
  mv "$cache/$suite-slim.tar.tmp" "$cache/$suite-slim.tar"
  rm -rf "$work"
  trap - EXIT
  say "cached $cache/$suite.tar and $cache/$suite-slim.tar"
}

import() {
  local tag=$1 tarball=$2 variant=$3
  "$docker" import \
    --change 'CMD ["bash"]' \
    --change "LABEL $label=debootstrap-minbase $label.variant=$variant" \
    "$tarball" "$tag" >/dev/null
  local what="debootstrap --variant=minbase"
  [ "$variant" = slim ] && what="$what, then without docs, man pages and locales as in -slim"
  say "imported $tag from $tarball ($what)"
}

[ "${FERRY_BASE_REBUILD:-0}" = 1 ] && rm -f "$cache/$suite.tar" "$cache/$suite-slim.tar"
for tag in "debian:$suite" "debian:$suite-slim"; do
  if [ "${FERRY_BASE_REBUILD:-0}" != 1 ] && have_image "$tag"; then
    origin=$("$docker" image inspect -f "{{index .Config.Labels \"$label\"}}" "$tag" 2>/dev/null || true)
    say "$tag: present${origin:+ (built locally: $origin)}"
    continue
  fi
  if [ "${FERRY_BASE_REBUILD:-0}" != 1 ] && timeout 120 "$docker" pull -q "$tag" >/dev/null 2>&1; then
    say "$tag: pulled from the registry"
    continue
  fi
  say "$tag: cannot be pulled (no registry reachable): building it locally"
  if [ "$tag" = "debian:$suite" ]; then
    tarball=$cache/$suite.tar variant=full
  else
    tarball=$cache/$suite-slim.tar variant=slim
  fi
  if [ ! -s "$tarball" ]; then
    build_tarballs
  else
    say "using the cached root file system $tarball"
  fi
  import "$tag" "$tarball" "$variant"
done
