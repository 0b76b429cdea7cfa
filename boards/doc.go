// Package boards describes the hardware graft runs on, as data: each board's
// architecture, A/B slot devices, bootloader backend and try counts, serial
// console, how to detect it from the device tree, where the booted slot is
// read and how the agent asks for a reboot.
//
// Built-in boards are JSON files embedded from builtin/; a board file can add
// boards or override them (see docs/boards.md). Parsing and validation are
// pure; the only I/O is LoadFile and ReadCompatible.
//
// It must never touch a slot, a bootloader environment or a console itself:
// it only says where they are. It imports no other graft package.
package boards
