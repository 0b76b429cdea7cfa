// AArch64 relocations gcc does not emit from link.c at -O2. Targets are
// within 1 MiB of the patch (link_test.go places them so).
	.section .text.asm_a64,"ax",%progbits
	.globl asm_a64
	.type asm_a64, %function
asm_a64:
	b.eq	t_helper			// CONDBR19
	cbz	x1, a_helper			// CONDBR19
	tbz	x0, #3, asm_a64_far		// TSTBR14 to the patch
	tbnz	w0, #1, asm_a64_far+8		// TSTBR14 to the patch
	ldr	x2, d_wide			// LD_PREL_LO19
	ldr	w2, d_counter+8			// LD_PREL_LO19
	adr	x3, d_table+3			// ADR_PREL_LO21
	adr	x3, asm_a64_far-4		// ADR_PREL_LO21 to the patch
	adrp	x4, :pg_hi21_nc:d_bytes		// ADR_PREL_PG_HI21_NC
	adrp	x4, d_bytes+0x1003		// ADR_PREL_PG_HI21
	ldrb	w5, [x4, #:lo12:d_bytes+3]	// LDST8_ABS_LO12_NC
	ldrh	w5, [x4, #:lo12:d_half+2]	// LDST16_ABS_LO12_NC
	ldr	w5, [x4, #:lo12:d_table+4]	// LDST32_ABS_LO12_NC
	ldr	x5, [x4, #:lo12:d_wide+8]	// LDST64_ABS_LO12_NC
	ldr	q5, [x4, #:lo12:d_wide+16]	// LDST128_ABS_LO12_NC
	add	x4, x4, #:lo12:d_bytes+0x1003	// ADD_ABS_LO12_NC
	bl	t_helper			// CALL26
	b	asm_a64_far			// JUMP26 to the patch

	.section .text.asm_a64_far,"ax",%progbits
	.globl asm_a64_far
	.type asm_a64_far, %function
asm_a64_far:
	nop
	nop
	ret

	.section .data.asm_a64,"aw",%progbits
	.balign 8
	.xword	d_table - .			// PREL64
	.xword	d_table + 24			// ABS64
	.word	d_counter - .			// PREL32
	.word	asm_a64 - . + 8			// PREL32 to the patch
	.word	d_counter + 4			// ABS32
