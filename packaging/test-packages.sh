#!/usr/bin/env bash
# Installs the built packages on this Debian/Ubuntu machine and checks them end to end:
#   1. apt-get installs both .deb files (dependencies included);
#   2. the service's ExecStart line runs as a dedicated user (systemd may be absent, as in
#      containers and CI), and the server answers the real client (examples/probe.rs);
#   3. the installed app starts under Xvfb, opened with the server's invite link, and its
#      connect screen (address filled in, key pinned by the invite) is captured to
#      dist/installed-app.png (look at it).
# Usage: packaging/test-packages.sh [DIST_DIR]   (run as root; `make package-test`)
set -euo pipefail
cd "$(dirname "$0")/.."
dist=${1:-dist}
PACKAGE_TEST_DISPLAY_NUM=${PACKAGE_TEST_DISPLAY_NUM:-95}
[ "$(id -u)" = 0 ] || { echo "run as root (it installs packages)"; exit 1; }

echo "== installing packages"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "./$dist"/classchat-server_*.deb "./$dist"/classchat_*.deb
test -x /usr/bin/classchat-server && test -x /usr/bin/classchat
test -f /etc/classchat/server.toml
test -f /usr/share/applications/classchat.desktop
test -f /usr/share/icons/hicolor/256x256/apps/classchat.png
desktop-file-validate /usr/share/applications/classchat.desktop 2>/dev/null || true

echo "== starting the service's ExecStart as its own user"
unit=$(ls /lib/systemd/system/classchat-server.service /usr/lib/systemd/system/classchat-server.service 2>/dev/null | head -n1)
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
id classchat >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin classchat
install -d -o classchat -g classchat -m 0700 /var/lib/classchat
# This machine's only network is loopback: keep the test server from announcing itself
# on other interfaces.
sed -i 's/^discovery = true/discovery = false/' /etc/classchat/server.toml
log=$(mktemp)
runuser -u classchat -- $exec_start >"$log" 2>&1 &
server_pid=$!
trap 'kill $server_pid 2>/dev/null || true; wait $server_pid 2>/dev/null || true; pkill -f "Xvfb :${PACKAGE_TEST_DISPLAY_NUM}" || true' EXIT
for _ in $(seq 1 300); do
  grep -q "listening on" "$log" && break
  sleep 0.1
done
cat "$log"
fp=$(grep -A1 "^Server key fingerprint" "$log" | tail -n1 | tr -d ' ')
[ -n "$fp" ] || { echo "the server printed no fingerprint"; exit 1; }
key_mode=$(stat -c %a /var/lib/classchat/server_key.der)
[ "$key_mode" = 600 ] || { echo "server key has mode $key_mode, expected 600"; exit 1; }
[ "$(stat -c %U /var/lib/classchat/classchat.db)" = classchat ] || { echo "database not owned by classchat"; exit 1; }

echo "== connecting with the wire client"
cargo run -q --release -p classchat-server --example probe -- 127.0.0.1:7420 "$fp"
/usr/bin/classchat-server admin users --data /var/lib/classchat

echo "== launching the installed app under Xvfb"
Xvfb :${PACKAGE_TEST_DISPLAY_NUM} -screen 0 1280x800x24 >/dev/null 2>&1 &
sleep 1
home=$(mktemp -d)
# Opened with the server's invite link, as a student clicking it would; discovery stays
# on this machine.
HOME=$home DISPLAY=:${PACKAGE_TEST_DISPLAY_NUM} /usr/bin/classchat --discovery loopback \
  "classchat://127.0.0.1:7420#$fp" >"$home/app.log" 2>&1 &
app_pid=$!
sleep 6
kill -0 $app_pid || { cat "$home/app.log"; echo "the app exited"; exit 1; }
DISPLAY=:${PACKAGE_TEST_DISPLAY_NUM} import -window root "$dist/installed-app.png"
kill $app_pid || true
echo "== ok: screenshot in $dist/installed-app.png"
