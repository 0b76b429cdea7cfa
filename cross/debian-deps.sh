#!/bin/sh
# Installs the Debian packages graft's tests and demo use, when missing
# (plus GRAFT_DEBIAN_EXTRA, for targets with needs of their own).
# Idempotent and quick when everything is there. Run as root (CI is).
set -eu
pkgs="mosquitto mosquitto-clients libubootenv-tool u-boot-tools grub-common xz-utils
 qemu-system-arm u-boot-qemu dosfstools mtools e2fsprogs fdisk cpio kmod
 qemu-system-x86 gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf libc6-dev-arm64-cross libc6-dev-armhf-cross
 libssl3 make python3-securesystemslib python3-nacl prometheus ${GRAFT_DEBIAN_EXTRA:-}"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "graft: missing Debian packages:$missing (run as root, or: sudo apt-get install$missing)" >&2
	exit 1
fi
echo "graft: installing Debian packages:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends $missing >/dev/null
