#!/usr/bin/env bash
# Screenshots of the real desktop app under Xvfb, against a local demo server with a few
# users, rooms and messages (gui/examples/demo_server.rs).
#
#   gui/screenshots.sh            # debug build
#   gui/screenshots.sh --release  # release build
#
# The demo seeds a plot and a template in #physics-lab (busy-room.png shows them, with
# the plot's thumbnail) and bob offers ada a file (dm.png shows Accept and Decline).
#
# bob and carol share lab files from the demo server's own sharers (issue 15):
# shared-files.png shows ada's shared folder, search-results.png a `/whohas lab3` in
# #physics-lab, and fetch.png the direct fetch of bob's large file in progress.
#
# A server of several nodes (issue 18): two `classchat-server`s with one key file stand in
# for the nodes; nodes-connect.png shows the connect screen with their invite, and
# nodes-status.png the status bar naming the node the app signed in through once the
# first node was stopped.
#
# Writes screenshots/connect.png, trust.png, busy-room.png, dm.png, announcements.png,
# browse.png, light.png, shared-files.png, search-results.png, fetch.png, rich-messages.png,
# message-search.png, nodes-connect.png and nodes-status.png. Needs xvfb, xauth, imagemagick, x11-utils, xdotool and the app's run-time
# libraries (`make shot-deps` installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=debug
CARGO_FLAGS=()
if [[ "${1:-}" == "--release" ]]; then
  PROFILE=release
  CARGO_FLAGS=(--release)
fi
TARGET="${CARGO_TARGET_DIR:-target}"
OUT=screenshots
DISPLAY_NUM="${SCREENSHOT_DISPLAY:-:97}"
PORT="${SCREENSHOT_PORT:-7431}"
ADDR="127.0.0.1:$PORT"

for tool in Xvfb import xdotool; do
  command -v "$tool" >/dev/null || { echo "missing $tool: run 'make shot-deps'" >&2; exit 1; }
done

cargo build "${CARGO_FLAGS[@]}" -p classchat --bin classchat --example demo_server
cargo build "${CARGO_FLAGS[@]}" -p classchat-server --bin classchat-server
APP="$TARGET/$PROFILE/classchat"
SERVER="$TARGET/$PROFILE/classchat-server"
DEMO="$TARGET/$PROFILE/examples/demo_server"

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$OUT"

Xvfb "$DISPLAY_NUM" -screen 0 1280x800x24 -nolisten tcp >"$WORK/xvfb.log" 2>&1 &
PIDS+=($!)
export DISPLAY="$DISPLAY_NUM"
unset WAYLAND_DISPLAY
for _ in $(seq 1 50); do xdpyinfo >/dev/null 2>&1 && break; sleep 0.1; done

# The demo server keeps running while its stdin is open.
mkfifo "$WORK/demo.in"
"$DEMO" --listen "$ADDR" --data "$WORK/server" --app-data "$WORK/ada" --user ada \
  <"$WORK/demo.in" >"$WORK/demo.log" 2>&1 &
PIDS+=($!)
exec 3>"$WORK/demo.in"
for _ in $(seq 1 300); do grep -q READY "$WORK/demo.log" && break; sleep 0.1; done
grep -q READY "$WORK/demo.log" || { cat "$WORK/demo.log"; echo "demo server did not start" >&2; exit 1; }

APP_PID=""
# start_app DATA_DIR USER [more args]: starts the app and waits for its window.
start_app() {
  local data="$1" user="$2"
  shift 2
  "$APP" --data-dir "$data" --server "$ADDR" --user "$user" --discovery loopback "$@" >"$WORK/app.log" 2>&1 &
  APP_PID=$!
  PIDS+=("$APP_PID")
  WIN=""
  for _ in $(seq 1 100); do
    WIN="$(xdotool search --name '^ClassChat( \([0-9]+\))?$' 2>/dev/null | head -n1 || true)"
    [[ -n "$WIN" ]] && break
    sleep 0.2
  done
  [[ -n "$WIN" ]] || { cat "$WORK/app.log"; echo "the app window did not appear" >&2; exit 1; }
  xdotool windowmove "$WIN" 0 0 windowsize "$WIN" 1280 800 2>/dev/null || true
  # Without a window manager nobody hands out keyboard focus: take it explicitly
  # (`--sync` can wait forever here, so it is not used).
  xdotool windowfocus "$WIN" 2>/dev/null || true
  sleep 2
}
stop_app() {
  kill "$APP_PID" 2>/dev/null || true
  wait "$APP_PID" 2>/dev/null || true
}
shot() {
  sleep "${2:-1}"
  import -window root "$OUT/$1.png"
  echo "wrote $OUT/$1.png"
}
# Real (XTEST) input to the focused window; winit ignores events sent to a window id.
key() { xdotool key "$@"; sleep 0.3; }
type_text() { xdotool type --delay 20 "$1"; sleep 0.3; }
click_at() { xdotool mousemove "$1" "$2" click 1; sleep 0.5; }

# 1. The connect screen of a fresh install, then the first-contact key prompt.
start_app "$WORK/newcomer" newcomer
shot connect
click_at 640 298 # the password field
type_text "demo-password"
key Return
shot trust 2
stop_app

# 2. A busy room, as ada (logged straight in with the prepared session).
start_app "$WORK/ada" ada
echo live >&3 # others write now: unread counts, a mention, a DM, an announcement
sleep 2
key ctrl+k
type_text "physics-lab"
key Return
shot busy-room 2

# 3. A direct message conversation.
key ctrl+k
type_text "bob"
key Return
shot dm 2

# 3b. The announcements (broadcasts), styled apart from chat.
key ctrl+k
type_text "Announcements"
key Return
shot announcements 2

# 4. The browse dialog (the button at the top of the rooms sidebar).
click_at 70 65 # "Browse rooms", at the top of the rooms sidebar
shot browse 2
key Escape

# 5. The busy room in the light theme (the status bar's theme switch cycles
#    system → dark → light).
stop_app
start_app "$WORK/ada" ada
key ctrl+k
type_text "physics-lab"
key Return
click_at 1222 788 # the theme switch in the status bar: system → dark
click_at 1222 788 # dark → light
shot light 2
stop_app

# 6. Sharing with classmates: ada's shared folder (given on the command line; sharing is
#    switched on by command), a search answered by bob and carol, and a direct fetch.
#    Downloads go to a home of the script's own.
SHARE="$WORK/ada-share"
mkdir -p "$SHARE/week7" "$WORK/home"
printf 'import numpy as np\n' >"$SHARE/lab3-fit.py"
head -c 24000 /dev/urandom >"$SHARE/lab3-notes.md"
head -c 130000 /dev/urandom >"$SHARE/week7/spectrum.csv"
printf 'draft\n' >"$SHARE/week7/old-draft.txt"
HOME="$WORK/home" start_app "$WORK/ada" ada --share-folder "$SHARE"
click_at 1222 788 # the theme switch: light → system (dark here)
key ctrl+k
type_text "physics-lab"
key Return
type_text "/share on"
key Return
type_text "/share old-draft.txt off"
key Return
type_text "/shared"
key Return
shot shared-files 2
click_at 1084 12 # the panel's close button: the chat gets its room back
click_at 500 748 # back in the composer
type_text "/whohas lab3"
key Return
shot search-results 4
click_at 934 615 # Get, on bob's large file (the first result)
shot fetch 2
stop_app

# 7. Messages as people expect them (issue 16): #cs101 has code in C and Python, a reply,
#    an edited and a deleted message and reactions; then a search from the sidebar box.
start_app "$WORK/ada" ada
key ctrl+k
type_text "cs101"
key Return
xdotool mousemove 700 420 # over carol's answer: its toolbar shows
shot rich-messages 2
click_at 100 11 # the sidebar's search box
type_text "segfault"
key Return
shot message-search 2
stop_app

# 8. A server of several nodes. Both print the one invite that lists them
#    (--public-address, repeated); the app is opened with it as a link.
NODE1="127.0.0.1:$((PORT + 1))"
NODE2="127.0.0.1:$((PORT + 2))"
printf 'rsa_bits = 2048\ndiscovery = false\n' >"$WORK/node.toml"
# start_node N ADDR: runs node N and waits until it printed its invite.
start_node() {
  mkdir -p "$WORK/node$1"
  "$SERVER" --listen "$2" --data "$WORK/node$1" --config "$WORK/node.toml" --name "Physics Dept" \
    --public-address "$NODE1" --public-address "$NODE2" </dev/null >"$WORK/node$1.log" 2>&1 &
  PIDS+=($!)
  NODE_PID=$!
  for _ in $(seq 1 300); do grep -q 'classchat://' "$WORK/node$1.log" && break; sleep 0.1; done
  grep -q 'classchat://' "$WORK/node$1.log" || { cat "$WORK/node$1.log"; echo "node $1 did not start" >&2; exit 1; }
}
start_node 1 "$NODE1"
NODE1_PID=$NODE_PID
mkdir -p "$WORK/node2"
cp "$WORK/node1/server_key.der" "$WORK/node2/" # one key file: one fingerprint
start_node 2 "$NODE2"
INVITE="$(grep -o 'classchat://[^ ]*' "$WORK/node1.log" | head -n1)"
start_app "$WORK/student" student "$INVITE"
shot nodes-connect
kill "$NODE1_PID" # the first node goes down before the student signs in
click_at 640 323 # the password field (one line lower than on connect.png: the addresses)
type_text "demo-password"
click_at 570 357 # Create account
shot nodes-status 15 # a new account's 3072-bit identity key takes a while in a debug build
stop_app
exec 3>&-
echo "screenshots in $OUT/"
