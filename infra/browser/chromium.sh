#!/usr/bin/env bash
# chromium.sh -- Debian's Chromium, for the tests that drive a page in a headless browser.
#
# Usage: infra/browser/chromium.sh {install|path}
#   install  apt-get install chromium (Debian's package) unless a chromium is already there
#   path     install if needed, then print the browser executable's path
# No browser build is ever downloaded from anywhere else: Playwright drives this one.
set -euo pipefail

log() { echo "chromium.sh: $*" >&2; }

find_chromium() {
  command -v chromium 2>/dev/null || command -v chromium-browser 2>/dev/null
}

cmd_install() {
  if find_chromium >/dev/null; then return 0; fi
  [[ "$(id -u)" == 0 ]] || { log "Chromium is missing and installing it needs root"; exit 1; }
  log "installing Chromium from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
  find_chromium >/dev/null || { log "chromium not found after install"; exit 1; }
}

case "${1:-}" in
  install) cmd_install ;;
  path) cmd_install; find_chromium ;;
  *) echo "usage: $0 {install|path}" >&2; exit 2 ;;
esac
