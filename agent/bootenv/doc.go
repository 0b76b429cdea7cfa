// Package bootenv reads and writes bootloader environments byte-compatibly
// with the bootloaders' own tools: U-Boot environments (the format of
// fw_printenv/fw_setenv from libubootenv, mkenvimage and U-Boot's
// saveenv; single or redundant copies, raw on a device or inside a file,
// located by an fw_env.config) and GRUB environment blocks (grubenv, the
// format of grub-editenv and GRUB's save_env).
//
// The encoders and decoders (EncodeUBoot, DecodeUBoot, EncodeGrub,
// DecodeGrub, ParseFWConfig) are pure: bytes in, values out. UBoot and
// Grub are the thin I/O layer around them.
//
// It must never write a byte outside the configured environment area(s),
// never overwrite the active copy of a redundant U-Boot environment (the
// inactive copy is the one written, then flushed; that is what makes a
// save atomic), and never return variables from a copy whose CRC does not
// match. It knows nothing about A/B slots: BOOT_ORDER and friends are
// ordinary variables here (see docs/bootenv.md).
package bootenv
