#!/usr/bin/env bash
# Screenshots of the message renderer's gallery (gui/examples/markdown_gallery.rs) under
# Xvfb: screenshots/markdown.png (dark) and screenshots/markdown-light.png.
#
#   gui/markdown_shots.sh
#
# Needs xvfb, imagemagick, x11-utils and xdotool (`make shot-deps` installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

DISPLAY_NUM="${SCREENSHOT_DISPLAY:-:93}"
for tool in Xvfb import xdotool; do
  command -v "$tool" >/dev/null || { echo "missing $tool: run 'make shot-deps'" >&2; exit 1; }
done
cargo build -p classchat --example markdown_gallery
GALLERY="${CARGO_TARGET_DIR:-target}/debug/examples/markdown_gallery"
mkdir -p screenshots

Xvfb "$DISPLAY_NUM" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 &
XVFB=$!
APP=""
cleanup() {
  [[ -n "$APP" ]] && kill "$APP" 2>/dev/null || true
  kill "$XVFB" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
export DISPLAY="$DISPLAY_NUM"
unset WAYLAND_DISPLAY
for _ in $(seq 1 50); do xdpyinfo >/dev/null 2>&1 && break; sleep 0.1; done

# shot NAME [gallery args]
shot() {
  local name="$1"
  shift
  "$GALLERY" "$@" >/dev/null 2>&1 &
  APP=$!
  local win=""
  for _ in $(seq 1 100); do
    win="$(xdotool search --name '^markdown gallery$' 2>/dev/null | head -n1 || true)"
    [[ -n "$win" ]] && break
    sleep 0.2
  done
  [[ -n "$win" ]] || { echo "the gallery window did not appear" >&2; exit 1; }
  xdotool windowmove "$win" 0 0 windowsize "$win" 1280 800 2>/dev/null || true
  sleep 2
  import -window root "screenshots/$name.png"
  echo "wrote screenshots/$name.png"
  kill "$APP"
  wait "$APP" 2>/dev/null || true
  APP=""
}
shot markdown
shot markdown-light --light
