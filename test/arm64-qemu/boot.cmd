# graft A/B boot script for U-Boot (@ARCH@), following RAUC's U-Boot
# conventions: BOOT_ORDER lists the slots, first = preferred;
# BOOT_<slot>_LEFT counts the boot attempts a slot has left. The script
# picks the first slot in BOOT_ORDER with attempts left, decrements its
# counter, saves the environment and only then boots it, with
# rauc.slot=<slot> on the kernel command line. When no slot has attempts
# left it sets every counter back to 3, saves and resets the board.
#
# Disk layout: the environment lives raw on the disk, in the gap between
# the partition table and partition 1; partition 1 (FAT) holds this
# script (boot.scr); partition 2 is slot A, partition 3 slot B, each a FAT
# file system with the kernel (@KERNEL@) and initrd.img.
#
# The environment is redundant, the way U-Boot keeps it on boards with
# CONFIG_SYS_REDUNDAND_ENVIRONMENT: two copies of @ENV_SIZE@ bytes, copy 1
# at block @ENV1_BLK@ and copy 2 at block @ENV2_BLK@ (@ENV_BLKS@ blocks of
# 512 bytes each), each "crc32 | flags | data". flags is a counter that
# every save increments (0 follows 255). The copy with a valid CRC and
# the newer counter is read; a save writes the OTHER copy with the counter
# + 1, so a power cut in the middle of a save tears only the copy that was
# not in use, and the next boot reads the previous environment. fw_printenv
# reads the same copies with the fw_env.config lines
#     /dev/vda @ENV1_OFF@ @ENV_SIZE@
#     /dev/vda @ENV2_OFF@ @ENV_SIZE@
# and graft-agent (agent/bootenv) writes them the same way.
#
# This U-Boot is built without the redundant format, so "env import -c"
# and "env export -c" handle "crc32 | data": the script moves the CRC over
# the flags byte before an import, and back after an export. An import
# checks the CRC before it changes any variable, so a torn copy changes
# nothing and the other copy is tried.
#
# Only the variables listed in graft_vars are read and written back.
# Counters are hexadecimal: setexpr writes its result in hex without a
# prefix and test reads 0x${...}; for 0..9 hex and decimal agree.
#
# graft_args (optional, in the environment) replaces the default extra
# kernel argument "quiet", e.g. "loglevel=7" for a verbose kernel.
#
# Adapting it to a board: change the environment's blocks, the partition
# numbers, the root= device and the console. With a U-Boot built with the
# redundant environment, the CRC moves are not needed.

setenv graft_vars "BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT graft_args"

# Buffers: copy 1, copy 2, 4 bytes of scratch. ${loadaddr} may equal
# ${scriptaddr}: that is safe, "source" runs a copy of this script
# (checked with U-Boot 2023.01).
setexpr graft_buf1 ${loadaddr} + 0
setexpr graft_buf2 ${loadaddr} + 0x8000
setexpr graft_tmp ${loadaddr} + 0x10000
setexpr graft_p1 ${graft_buf1} + 1
setexpr graft_p2 ${graft_buf2} + 1
setexpr graft_fp1 ${graft_buf1} + 4
setexpr graft_fp2 ${graft_buf2} + 4

setenv graft_copy
setenv graft_f1 0
setenv graft_f2 0
${devtype} dev ${devnum}
if ${devtype} read ${graft_buf1} @ENV1_BLK@ @ENV_BLKS@ && ${devtype} read ${graft_buf2} @ENV2_BLK@ @ENV_BLKS@; then
  setexpr.b graft_f1 *${graft_fp1}
  setexpr.b graft_f2 *${graft_fp2}
  # crc32 | flags | data  ->  crc32 | data, one byte further on.
  cp.b ${graft_buf1} ${graft_tmp} 4
  cp.b ${graft_tmp} ${graft_p1} 4
  cp.b ${graft_buf2} ${graft_tmp} 4
  cp.b ${graft_tmp} ${graft_p2} 4
  # The newer copy first: the higher counter, 0 after 255, copy 1 on a tie.
  setenv graft_first 1
  if test 0x${graft_f1} -eq 0xff && test 0x${graft_f2} -eq 0; then
    setenv graft_first 2
  elif test 0x${graft_f2} -eq 0xff && test 0x${graft_f1} -eq 0; then
    setenv graft_first 1
  elif test 0x${graft_f2} -gt 0x${graft_f1}; then
    setenv graft_first 2
  fi
  if test ${graft_first} = 1; then
    setenv graft_pa ${graft_p1}; setenv graft_ca 1; setenv graft_pb ${graft_p2}; setenv graft_cb 2
  else
    setenv graft_pa ${graft_p2}; setenv graft_ca 2; setenv graft_pb ${graft_p1}; setenv graft_cb 1
  fi
  if env import -c ${graft_pa} @ENV_ISIZE@ ${graft_vars}; then
    setenv graft_copy ${graft_ca}
  else
    echo "graft-boot: env copy ${graft_ca} has a bad CRC; trying copy ${graft_cb}"
    if env import -c ${graft_pb} @ENV_ISIZE@ ${graft_vars}; then
      setenv graft_copy ${graft_cb}
    else
      echo "graft-boot: env copy ${graft_cb} has a bad CRC"
    fi
  fi
fi

# Where the next save goes: the copy not read, with the counter + 1.
if test "${graft_copy}" = 2; then
  echo "graft-boot: env copy 2 read (flags ${graft_f2})"
  setenv graft_wcopy 1; setenv graft_wbuf ${graft_buf1}; setenv graft_wblk @ENV1_BLK@; setenv graft_wp ${graft_p1}; setenv graft_wfp ${graft_fp1}
  setexpr graft_nf ${graft_f2} + 1
else
  if test "${graft_copy}" = 1; then
    echo "graft-boot: env copy 1 read (flags ${graft_f1})"
  else
    # A missing or torn environment (both copies bad) leaves the
    # variables unset: the defaults below apply.
    echo "graft-boot: no valid env copy; using defaults"
  fi
  setenv graft_wcopy 2; setenv graft_wbuf ${graft_buf2}; setenv graft_wblk @ENV2_BLK@; setenv graft_wp ${graft_p2}; setenv graft_wfp ${graft_fp2}
  setexpr graft_nf ${graft_f1} + 1
fi
if test 0x${graft_nf} -eq 0x100; then
  setenv graft_nf 0
fi

# Save: export "crc32 | data" one byte in, move the CRC back to the
# start, put the counter in the flags byte, write the copy's blocks.
setenv graft_save 'echo "graft-boot: saving env copy ${graft_wcopy} (flags ${graft_nf})"; env export -c -s @ENV_ISIZE@ ${graft_wp} ${graft_vars}; cp.b ${graft_wp} ${graft_tmp} 4; cp.b ${graft_tmp} ${graft_wbuf} 4; mw.b ${graft_wfp} ${graft_nf}; if ${devtype} write ${graft_wbuf} ${graft_wblk} @ENV_BLKS@; then echo "graft-boot: env copy ${graft_wcopy} saved"; else echo "graft-boot: saving env copy ${graft_wcopy} failed"; fi'

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
  run graft_save
  echo "graft-boot: reset"
  reset
fi

# Save the decremented counter before booting: a kernel that crashes or
# hangs has then used up its attempt.
run graft_save
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
