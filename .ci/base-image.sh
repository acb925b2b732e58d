# The Debian base image of `make compose-test` (sourced by .ci/compose-test).
#
# No image registry is reachable from the machines this runs on, so nothing can be pulled: the base image
# is a minimal Debian bookworm root file system made by debootstrap from the host's Debian mirror and
# imported with `docker import`. Its tarball is kept under var/compose-test/ and the image in the engine's
# data-root, so a second run on the same machine reuses both.

BASE_IMAGE="${BASE_IMAGE:-klinestream-base:bookworm}"
BASE_CACHE="${BASE_CACHE:-$PWD/var/compose-test/base}"

# The host's Debian mirror (first non-security bookworm source), else deb.debian.org.
debian_mirror() {
  local url
  url=$(grep -hsE '^(deb |URIs:)' /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
    | grep -oE 'https?://[^ ]+' | grep -v security | grep -E '/debian/?$' | head -n 1)
  printf '%s' "${url:-http://deb.debian.org/debian}"
}

# debootstrap --variant=minbase bookworm into a tarball (once per machine).
_base_rootfs_tarball() {
  local tarball="$BASE_CACHE/bookworm-minbase.tar" rootfs="$BASE_CACHE/rootfs" mirror
  if [ -s "$tarball" ]; then
    echo "[base] reusing $tarball" >&2
    printf '%s' "$tarball"
    return 0
  fi
  mirror=$(debian_mirror)
  echo "[base] debootstrap --variant=minbase bookworm from $mirror" >&2
  rm -rf "$rootfs"
  mkdir -p "$BASE_CACHE"
  debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$mirror" >"$BASE_CACHE/debootstrap.log" 2>&1 \
    || { tail -n 20 "$BASE_CACHE/debootstrap.log" >&2; return 1; }
  cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
EOF
  # like Debian's -slim images: no documentation, manual pages or recommended packages in images
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$rootfs/etc/apt/apt.conf.d/docker-slim"
  # the image trusts the certificate authorities the host added (a TLS-inspecting proxy to the registries)
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null
  fi
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
  tar --numeric-owner -C "$rootfs" -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
  rm -rf "$rootfs"
  printf '%s' "$tarball"
}

# Import the base image unless the engine has it already.
base_image() {
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    echo "[base] $BASE_IMAGE exists: reused" >&2
    return 0
  fi
  local tarball
  tarball=$(_base_rootfs_tarball) || return 1
  # pip, uv and curl read the system trust store (it holds the host's extra certificate authorities)
  docker import \
    --change 'ENV LANG=C.UTF-8 SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PIP_CERT=/etc/ssl/certs/ca-certificates.crt UV_NATIVE_TLS=1' \
    --change 'CMD ["bash"]' \
    "$tarball" "$BASE_IMAGE" >/dev/null
  echo "[base] imported $BASE_IMAGE ($(docker image inspect --format '{{.Size}}' "$BASE_IMAGE" | numfmt --to=iec))" >&2
}
