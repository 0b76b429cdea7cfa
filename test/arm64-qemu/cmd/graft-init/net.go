package main

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ifUp sets IFF_UP on the named interface.
func ifUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	return setUp(fd, name)
}

func setUp(fd int, name string) error {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS %s: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCSIFFLAGS %s: %w", name, err)
	}
	return nil
}

// configureIface assigns cfg's address and netmask, brings the interface up
// and adds the default route if cfg names a gateway.
func configureIface(cfg ipConfig) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	set := func(req uint, what string, v []byte) error {
		ifr, err := unix.NewIfreq(cfg.Iface)
		if err != nil {
			return err
		}
		if err := ifr.SetInet4Addr(v); err != nil {
			return err
		}
		if err := unix.IoctlIfreq(fd, req, ifr); err != nil {
			return fmt.Errorf("%s %s: %w", what, cfg.Iface, err)
		}
		return nil
	}
	addr := cfg.Prefix.Addr().As4()
	if err := set(unix.SIOCSIFADDR, "SIOCSIFADDR", addr[:]); err != nil {
		return err
	}
	if err := set(unix.SIOCSIFNETMASK, "SIOCSIFNETMASK", netmask(cfg.Prefix)); err != nil {
		return err
	}
	if err := setUp(fd, cfg.Iface); err != nil {
		return err
	}
	if cfg.Gateway.IsValid() {
		if err := addDefaultRoute(fd, cfg.Gateway.As4()); err != nil {
			return err
		}
	}
	return nil
}

// rtentry is struct rtentry from <linux/route.h>; unsigned long and pointers
// are uintptr, which gives the C layout on every Linux ABI Go supports.
type rtentry struct {
	pad1    uintptr
	dst     unix.RawSockaddrInet4
	gateway unix.RawSockaddrInet4
	genmask unix.RawSockaddrInet4
	flags   uint16
	pad2    int16
	pad3    uintptr
	pad4    uintptr
	metric  int16
	dev     uintptr
	mtu     uintptr
	window  uintptr
	irtt    uint16
}

// addDefaultRoute adds 0.0.0.0/0 via gw with the SIOCADDRT ioctl.
func addDefaultRoute(fd int, gw [4]byte) error {
	rt := rtentry{flags: unix.RTF_UP | unix.RTF_GATEWAY}
	rt.dst.Family = unix.AF_INET
	rt.genmask.Family = unix.AF_INET
	rt.gateway.Family = unix.AF_INET
	rt.gateway.Addr = gw
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCADDRT, uintptr(unsafe.Pointer(&rt))); errno != 0 {
		return fmt.Errorf("SIOCADDRT default via %d.%d.%d.%d: %w", gw[0], gw[1], gw[2], gw[3], errno)
	}
	return nil
}
