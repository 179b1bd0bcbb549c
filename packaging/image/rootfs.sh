#!/bin/sh
# Assembles the container image's root filesystem from a built mqnode: the binary, stripped;
# exactly the shared libraries it (and dash, the entrypoint's shell) loads, taken from this
# Debian host as ldd resolves them, with their copyright files; a passwd/group with the
# unprivileged `mqnode` user; and the entrypoint. No package manager, no other tools.
#
#   packaging/image/rootfs.sh BINARY OUTDIR
#
# The Dockerfile copies OUTDIR/ to / (`./build.sh image` runs this, then the build).
set -eu
bin=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
[ -x "$bin" ] || { echo "rootfs.sh: $bin: not an executable" >&2; exit 2; }

rm -rf "$out"
mkdir -p "$out/usr/bin" "$out/usr/lib" "$out/usr/lib64" "$out/usr/local/bin" "$out/etc/mqnode" \
         "$out/tmp" "$out/usr/share/doc"
# Debian's merged /usr layout, so the paths ldd prints (/lib/..., /lib64/...) hold.
ln -s usr/bin "$out/bin"
ln -s usr/lib "$out/lib"
ln -s usr/lib64 "$out/lib64"
chmod 1777 "$out/tmp"

strip --strip-unneeded -o "$out/usr/local/bin/mqnode" "$bin"
cp /usr/bin/dash "$out/usr/bin/dash"
ln -s dash "$out/usr/bin/sh"
install -m 0755 "$here/entrypoint.sh" "$out/usr/local/bin/mqnode-entrypoint"

# Every library the two executables load, under the path the dynamic loader looks for.
libs=$( (ldd "$bin"; ldd /usr/bin/dash) | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }' | sort -u)
for lib in $libs; do
  dir=$(readlink -f "$(dirname "$lib")")
  mkdir -p "$out$dir"
  cp -L "$lib" "$out$dir/$(basename "$lib")"
  # The library's Debian copyright file travels with it.
  pkg=$(dpkg-query -S "$(readlink -f "$lib")" 2>/dev/null | head -n1 | cut -d: -f1) || pkg=""
  if [ -n "$pkg" ] && [ -f "/usr/share/doc/$pkg/copyright" ]; then
    mkdir -p "$out/usr/share/doc/$pkg"
    cp "/usr/share/doc/$pkg/copyright" "$out/usr/share/doc/$pkg/"
  fi
done
mkdir -p "$out/usr/share/doc/dash" && cp /usr/share/doc/dash/copyright "$out/usr/share/doc/dash/"

cat > "$out/etc/passwd" <<'PW'
root:x:0:0:root:/root:/usr/sbin/nologin
mqnode:x:999:999:mqnode:/var/lib/mqnode:/usr/sbin/nologin
PW
cat > "$out/etc/group" <<'GR'
root:x:0:
mqnode:x:999:
GR
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$out/etc/nsswitch.conf"
echo "rootfs.sh: $out: $(du -sk "$out" | cut -f1) KiB" >&2
