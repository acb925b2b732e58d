#!/usr/bin/env bash
# apt-install.sh COMMAND:PACKAGE ...: install, from Debian's packages, each PACKAGE whose COMMAND is not on
# PATH; as root, else through sudo. Says in one line what is missing and exits 1 when it cannot install.
set -euo pipefail
missing=()
for pair in "$@"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
[ "${#missing[@]}" -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: ${missing[*]} missing and this is no Debian/Ubuntu system (no apt-get): install ${missing[*]} yourself" >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "error: ${missing[*]} missing, and installing needs root: run 'sudo apt-get install ${missing[*]}' (or make as root)" >&2
  exit 1
fi
echo "installing ${missing[*]} (apt-get)" >&2
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
