# graft A/B boot script for U-Boot (@ARCH@), following RAUC's U-Boot
# conventions: BOOT_ORDER lists the slots, first = preferred;
# BOOT_<slot>_LEFT counts the boot attempts a slot has left. The script
# picks the first slot in BOOT_ORDER with attempts left, decrements its
# counter, saves the environment and only then boots it, with
# rauc.slot=<slot> on the kernel command line. When no slot has attempts
# left it sets every counter back to 3, saves and resets the board.
#
# Disk layout: partition 1 (FAT) holds this script (boot.scr) and
# uboot.env; partition 2 is slot A, partition 3 slot B, each a FAT file
# system with the kernel (@KERNEL@) and initrd.img.
#
# uboot.env is a single-copy U-Boot environment of 0x4000 bytes (CRC32,
# then name=value entries), the format fw_printenv reads with the
# fw_env.config line "<file> 0x0 0x4000". Only the variables listed in
# graft_vars are read from it and written back.
#
# Counters are hexadecimal: setexpr writes its result in hex without a
# prefix and test reads 0x${...}; for 0..9 hex and decimal agree.
#
# graft_args (optional, in uboot.env) replaces the default extra kernel
# argument "quiet", e.g. "loglevel=7" for a verbose kernel.
#
# Adapting it to a board: change the partition numbers, the root= device
# and the console, and keep uboot.env on a partition U-Boot can write.

setenv graft_vars "BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT graft_args"

# ${loadaddr} may equal ${scriptaddr}: that is safe, "source" runs a copy
# of this script (checked with U-Boot 2023.01).
# A missing file or a bad CRC (a power cut while it was written) leaves
# the variables unset: the defaults below apply.
if load ${devtype} ${devnum}:1 ${loadaddr} uboot.env && env import -c ${loadaddr} 0x4000 ${graft_vars}; then
  echo "graft-boot: uboot.env read"
else
  echo "graft-boot: no valid uboot.env on ${devtype} ${devnum}:1; using defaults"
fi

test -n "${BOOT_ORDER}" || setenv BOOT_ORDER "A B"
test -n "${BOOT_A_LEFT}" || setenv BOOT_A_LEFT 3
test -n "${BOOT_B_LEFT}" || setenv BOOT_B_LEFT 3

setenv raucslot
setenv bootpart
setenv graft_left
for BOOT_SLOT in "${BOOT_ORDER}"; do
  if test "x${raucslot}" != "x"; then
    # a slot is chosen: skip the remaining ones
  elif test "x${BOOT_SLOT}" = "xA"; then
    if test 0x${BOOT_A_LEFT} -gt 0; then
      setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
      setenv raucslot A
      setenv bootpart 2
      setenv graft_left ${BOOT_A_LEFT}
    fi
  elif test "x${BOOT_SLOT}" = "xB"; then
    if test 0x${BOOT_B_LEFT} -gt 0; then
      setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
      setenv raucslot B
      setenv bootpart 3
      setenv graft_left ${BOOT_B_LEFT}
    fi
  fi
done

if test -z "${raucslot}"; then
  echo "graft-boot: no slot has attempts left (BOOT_ORDER ${BOOT_ORDER}); resetting counters to 3"
  setenv BOOT_A_LEFT 3
  setenv BOOT_B_LEFT 3
  env export -c -s 0x4000 ${loadaddr} ${graft_vars}
  fatwrite ${devtype} ${devnum}:1 ${loadaddr} uboot.env 0x4000 || echo "graft-boot: saving uboot.env failed"
  echo "graft-boot: reset"
  reset
fi

# Save the decremented counter before booting: a kernel that crashes or
# hangs has then used up its attempt.
env export -c -s 0x4000 ${loadaddr} ${graft_vars}
fatwrite ${devtype} ${devnum}:1 ${loadaddr} uboot.env 0x4000 || echo "graft-boot: saving uboot.env failed"
echo "graft-boot: slot ${raucslot} (BOOT_${raucslot}_LEFT now ${graft_left})"

setenv graft_kargs quiet
test -n "${graft_args}" && setenv graft_kargs "${graft_args}"
setenv bootargs "console=ttyAMA0 panic=1 rauc.slot=${raucslot} root=/dev/vda${bootpart} graft.ip=eth0,10.0.2.15/24 ${graft_kargs}"
echo "graft-boot: bootargs ${bootargs}"

if load ${devtype} ${devnum}:${bootpart} ${kernel_addr_r} @KERNEL@; then
  if load ${devtype} ${devnum}:${bootpart} ${ramdisk_addr_r} initrd.img; then
    @BOOTCMD@ ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdtcontroladdr}
  fi
fi

# Only reached when the slot's kernel could not be loaded or started:
# reset, so that the next boot spends another attempt (or falls back)
# instead of stopping at the U-Boot prompt.
echo "graft-boot: slot ${raucslot} did not boot; reset"
reset
