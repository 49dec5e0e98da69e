#!/usr/bin/env bash
# Builds a self-contained tarball for machines where the user cannot install packages:
# both binaries, the desktop entry, the icons and an installer that puts them under
# ~/.local. Expects release binaries in target/release (make package builds them).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dist}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
arch=$(uname -m)
name="classchat-$version-linux-$arch"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/$name"
mkdir -p "$root/bin" "$root/share/applications" "$root/share/doc/classchat"
install -m 755 target/release/classchat target/release/classchat-server "$root/bin/"
install -m 644 packaging/classchat.desktop "$root/share/applications/"
for png in icons/png/classchat-*.png; do
  size=${png##*-}; size=${size%.png}
  install -D -m 644 "$png" "$root/share/icons/hicolor/${size}x${size}/apps/classchat.png"
done
install -D -m 644 icons/classchat.svg "$root/share/icons/hicolor/scalable/apps/classchat.svg"
install -m 644 README.md PROTOCOL.md packaging/server.toml "$root/share/doc/classchat/"
cat > "$root/install.sh" <<'INSTALL'
#!/usr/bin/env bash
# Installs ClassChat for the current user under ~/.local (no root needed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=${PREFIX:-$HOME/.local}
mkdir -p "$prefix/bin" "$prefix/share"
cp -r "$here/share/." "$prefix/share/"
install -m 755 "$here/bin/classchat" "$here/bin/classchat-server" "$prefix/bin/"
sed -i "s|^Exec=classchat|Exec=$prefix/bin/classchat|" "$prefix/share/applications/classchat.desktop"
command -v update-desktop-database >/dev/null && update-desktop-database "$prefix/share/applications" || true
command -v gtk-update-icon-cache >/dev/null && gtk-update-icon-cache -q -t "$prefix/share/icons/hicolor" || true
echo "Installed to $prefix. Start ClassChat from the desktop menu, or run $prefix/bin/classchat"
echo "The app needs these libraries (present on desktop systems): libx11, libxkbcommon, libGL/Mesa."
INSTALL
chmod 755 "$root/install.sh"
mkdir -p "$out"
tar -C "$stage" -czf "$out/$name.tar.gz" "$name"
echo "$out/$name.tar.gz"
