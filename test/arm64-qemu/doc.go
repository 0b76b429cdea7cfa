// Package rig is graft's emulation rig: real Debian kernels for arm64,
// armhf and amd64 (fetched with apt-get download and cached outside the
// repository), an initramfs whose init starts graft-agent, a disk image
// built without mounting anything (FAT boot partition with a RAUC-style
// U-Boot boot script and environment, slots A and B, a data partition),
// and QEMU booting it with Debian's real U-Boot while the test reads the
// serial console.
//
// Everything a run needs lives under a temporary directory and is removed
// after; every process it starts is stopped by PID.
package rig
