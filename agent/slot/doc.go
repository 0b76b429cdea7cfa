// Package slot holds the A/B slot mechanics of the graft agent:
//
//   - the boot state in RAUC's U-Boot conventions (BOOT_ORDER and
//     BOOT_<slot>_LEFT), as pure transitions on a map[string]string
//     environment, including Select, the bootloader's own algorithm, so a
//     simulated bootloader and the tests run the very logic of RAUC's
//     example U-Boot script;
//   - which slot is booted (the kernel command line) and which one is the
//     other;
//   - Install, which streams an image into the inactive slot in one pass
//     (decompress, hash, write), flushes it and reads it back to verify;
//   - CheckWritable, the guard that refuses the booted slot and anything
//     mounted.
//
// The package must never write the active slot: callers run CheckWritable
// before Install, and Install itself opens block devices exclusively so the
// kernel refuses a mounted one. It never loads or saves the bootloader
// environment (agent/bootenv does) and never decides when to update (the
// engine does).
package slot
