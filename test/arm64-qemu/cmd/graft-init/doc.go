// Command graft-init is the /init (PID 1) of the rig's guest initramfs.
//
// It mounts the kernel file systems, loads the modules listed in
// /etc/modules, configures the network from graft.ip= on the kernel command
// line, mounts the boot partition (/dev/vda1, vfat) on /boot and the data
// partition (/dev/vda4, ext4) on /var/lib/graft, and runs
// /bin/graft-agent run --config /var/lib/graft/agent.conf, reaping every
// child meanwhile. When the agent exits the machine restarts: at once for
// exit status 75 (the agent asked for a reboot), after 2 s otherwise.
// Every step is logged to the console with the prefix "graft-init: ".
//
// Run mode: with graft.run=1 on the kernel command line, init reads
// /etc/graft-run (JSON: {"argv": ["/abs/prog", ...], "env": ["K=V", ...]})
// and, after the modules and the network, runs that program as the
// machine's only job instead of mounting the disk and starting the agent:
// standard output and error on the console, standard input /dev/null,
// tmpfs on /dev/shm, working directory /, PATH and HOME set and then the
// given environment. When it exits, init prints "graft-run: exit N" (128+S
// for death by signal S, after "graft-run: killed by signal S"; 127 after
// "graft-run: error: ..." if it could not be started), syncs and powers the
// machine off. The rig's RunGuest builds such machines.
//
// It never exits, except when /etc/graft-init-fail exists: then it exits
// with status 1 on purpose, so the kernel panics (and with panic=N resets),
// which is the rig's release that does not boot.
//
// Built static (CGO_ENABLED=0) for arm64, arm/7 and amd64. It uses
// golang.org/x/sys/unix directly for mounts, finit_module, network ioctls
// and reboot, and nothing outside the standard library besides.
//
// It must never exit other than in that fail mode (PID 1 exiting panics
// the kernel), never decide anything about updates (that is the agent's
// job: init only starts it and restarts the machine when it ends), and
// never run on a host: it mounts over /proc, /sys, /dev and reboots, so
// it refuses to start unless it is PID 1.
package main
