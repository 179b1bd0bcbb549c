#!/bin/sh
# Builds mqnode's Debian package from a built binary with dpkg-deb (no debhelper needed):
#
#   packaging/deb/build-deb.sh BINARY OUTDIR      # ./build.sh deb runs it on the release build
#
# Layout: /usr/sbin/mqnode (stripped); /etc/mqnode/mqnode.json, /etc/default/mqnode and
# /etc/logrotate.d/mqnode (conffiles); the units mqnode.service and mqnode-vip.service;
# /usr/lib/mqnode/mqnode-import (run by `mqnode import`); the seed configs under
# /usr/share/mqnode/seed; the docs under /usr/share/doc/mqnode. The
# postinst creates the `mqnode` system user and /var/lib/mqnode, /var/log/mqnode owned by it.
# Depends: the Debian packages of the shared libraries the binary loads, at least at the
# versions this host has. Prints the .deb's path.
set -eu
bin=$1
out=$2
src=$(cd "$(dirname "$0")/../.." && pwd)
[ -x "$bin" ] || { echo "build-deb.sh: $bin: not an executable" >&2; exit 2; }
version=$("$bin" version | sed -n 's/^mqnode //p')
[ -n "$version" ] || { echo "build-deb.sh: $bin version printed no version" >&2; exit 2; }
arch=$(dpkg --print-architecture)

mkdir -p "$out"
stage=$(mktemp -d "${TMPDIR:-/tmp}/mqnode-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
umask 022
install -d "$stage/DEBIAN" "$stage/usr/sbin" "$stage/etc/mqnode" "$stage/etc/default" "$stage/etc/logrotate.d" \
           "$stage/lib/systemd/system" "$stage/usr/lib/mqnode" "$stage/usr/share/mqnode/seed" \
           "$stage/usr/share/doc/mqnode/zh-CN"
strip --strip-unneeded -o "$stage/usr/sbin/mqnode" "$bin"
chmod 0755 "$stage/usr/sbin/mqnode"
install -m 0644 "$src/conf/mqnode.json" "$stage/etc/mqnode/mqnode.json"
install -m 0644 "$src/packaging/systemd/mqnode.default" "$stage/etc/default/mqnode"
install -m 0644 "$src/packaging/deb/logrotate" "$stage/etc/logrotate.d/mqnode"
install -m 0644 "$src/packaging/systemd/mqnode.service" "$src/packaging/systemd/mqnode-vip.service" \
                "$stage/lib/systemd/system/"
install -m 0755 "$src/packaging/mqnode-import" "$stage/usr/lib/mqnode/mqnode-import"
install -m 0644 "$src"/conf/seed/*.json "$stage/usr/share/mqnode/seed/"
install -m 0644 "$src/README.md" "$src"/docs/*.md "$stage/usr/share/doc/mqnode/"
install -m 0644 "$src"/docs/zh-CN/*.md "$stage/usr/share/doc/mqnode/zh-CN/"
[ -f "$src/README.zh-CN.md" ] && install -m 0644 "$src/README.zh-CN.md" "$stage/usr/share/doc/mqnode/"
install -m 0755 "$src/packaging/deb/postinst" "$src/packaging/deb/prerm" "$src/packaging/deb/postrm" "$stage/DEBIAN/"
printf '/etc/mqnode/mqnode.json\n/etc/default/mqnode\n/etc/logrotate.d/mqnode\n' > "$stage/DEBIAN/conffiles"

# One dependency per package owning a library ldd resolves, at this host's upstream version.
depends=$(ldd "$bin" | awk '/=> \// { print $3 }' | while read -r lib; do
  # dpkg knows a library by the path its package ships (/lib/... on a merged /usr).
  { dpkg-query -S "$lib" 2>/dev/null || dpkg-query -S "$(readlink -f "$lib")" 2>/dev/null; } | head -n1 | cut -d: -f1
done | sort -u | while read -r pkg; do
  v=$(dpkg-query -W -f='${Version}' "$pkg" | sed 's/-[^-]*$//')
  printf '%s (>= %s), ' "$pkg" "$v"
done)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: mqnode
Version: $version
Architecture: $arch
Maintainer: mqnode developers <mqnode@localhost>
Installed-Size: $(du -sk "$stage" | cut -f1)
Depends: ${depends}adduser
Recommends: python3
Section: net
Priority: optional
Homepage: https://github.com/mqnode/mqnode
Description: AMQP 0-9-1 broker, TCP load balancer and VRRP in one binary
 mqnode replaces a RabbitMQ + HAProxy + keepalived deployment: a RabbitMQ 3.10
 compatible broker (disc and RAM nodes, clustering, the management HTTP API),
 HAProxy's TCP load balancing with health checks and a stats page, and
 keepalived's VRRP virtual address. Roles are chosen per host.
 .
 mqnode.service runs the broker and load balancer roles; mqnode-vip.service
 adds the vip role with the capabilities VRRP needs. "mqnode import" reads an
 existing deployment's files (python3).
CONTROL
deb="$out/mqnode_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zgzip --build "$stage" "$deb" >/dev/null
echo "$deb"
