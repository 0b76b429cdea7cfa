// Package initramfs builds the provisioning initramfs: a gzip-compressed
// newc archive (u-root's pkg/cpio) whose /init is graft-agent, which runs
// as PID 1 in provisioning mode (agent/provision): it mounts /proc, /sys
// and /dev, then answers the station on the board's console. It holds the
// directories the init mounts on, /dev/console, the board definitions and
// the arguments given to provisioning mode — nothing else, so the archive
// is a few megabytes and the same inputs give the same bytes.
package initramfs
