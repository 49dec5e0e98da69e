#!/usr/bin/env bash
# Builds the PNG sizes and the Windows .ico from classchat.svg.
# Needs rsvg-convert (librsvg2-bin) and ImageMagick; `make icons` installs them.
set -euo pipefail
cd "$(dirname "$0")"
sizes=(16 24 32 48 64 128 256 512)
mkdir -p png
for s in "${sizes[@]}"; do
  rsvg-convert -w "$s" -h "$s" classchat.svg -o "png/classchat-$s.png"
done
# ImageMagick 6 ships `convert`, 7 ships `magick`.
im=$(command -v magick || echo /usr/bin/convert)
"$im" png/classchat-16.png png/classchat-24.png png/classchat-32.png png/classchat-48.png \
  png/classchat-64.png png/classchat-128.png png/classchat-256.png classchat.ico
echo "built: ${sizes[*]} px PNGs and classchat.ico"
