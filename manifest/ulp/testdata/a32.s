@ ARM and Thumb-2 relocations gcc does not emit from link.c at -O2.
@ Targets are within 1 MiB of the patch (link_test.go places them so).
	.syntax unified
	.arch armv7-a

	.section .text.asm_thumb,"ax",%progbits
	.thumb
	.globl asm_thumb
	.type asm_thumb, %function
	.thumb_func
asm_thumb:
	beq.w	t_helper			@ THM_JUMP19
	bne.w	asm_thumb2			@ THM_JUMP19 to the patch
	b.w	t_log				@ THM_JUMP24
	bl	t_helper			@ THM_CALL
	bl	a_helper			@ THM_CALL, becomes BLX
	nop
	bl	a_helper			@ THM_CALL, becomes BLX, other alignment
	blx	t_helper			@ THM_CALL written as BLX, becomes BL
	movw	r0, #:lower16:d_table+8		@ THM_MOVW_ABS_NC
	movt	r0, #:upper16:d_table+8		@ THM_MOVT_ABS
	movw	r1, #:lower16:t_helper		@ THM_MOVW_ABS_NC, Thumb bit
	movt	r1, #:upper16:t_helper		@ THM_MOVT_ABS
	movw	r2, #:lower16:d_counter-.	@ THM_MOVW_PREL_NC
	movt	r2, #:upper16:d_counter-.	@ THM_MOVT_PREL
	movw	r3, #:lower16:asm_thumb2-.	@ THM_MOVW_PREL_NC to the patch
	movt	r3, #:upper16:asm_thumb2-.	@ THM_MOVT_PREL to the patch
	bx	lr
	.balign 4
	.word	d_counter - .			@ REL32
	.word	t_helper			@ ABS32, Thumb bit
	.word	a_helper + 8			@ ABS32

	.section .text.asm_thumb2,"ax",%progbits
	.thumb
	.globl asm_thumb2
	.type asm_thumb2, %function
	.thumb_func
asm_thumb2:
	bx	lr

	.section .text.asm_arm,"ax",%progbits
	.arm
	.globl asm_arm
	.type asm_arm, %function
asm_arm:
	bl	a_helper			@ CALL
	bl	t_helper			@ CALL, becomes BLX
	blx	a_helper			@ CALL written as BLX, becomes BL
	blx	t_log				@ CALL to Thumb as BLX
	beq	a_helper			@ JUMP24
	b	asm_arm2			@ JUMP24 to the patch
	movw	r0, #:lower16:d_table+8		@ MOVW_ABS_NC
	movt	r0, #:upper16:d_table+8		@ MOVT_ABS
	movw	r1, #:lower16:t_helper		@ MOVW_ABS_NC, Thumb bit
	movt	r1, #:upper16:t_helper		@ MOVT_ABS
	movw	r2, #:lower16:d_counter-.	@ MOVW_PREL_NC
	movt	r2, #:upper16:d_counter-.	@ MOVT_PREL
	bx	lr
	.word	a_helper - .			@ REL32
	.word	t_log - . + 4			@ REL32, Thumb bit

	.section .text.asm_arm2,"ax",%progbits
	.arm
	.globl asm_arm2
	.type asm_arm2, %function
asm_arm2:
	bx	lr

	.section .data.asm_a32,"aw",%progbits
	.word	t_helper			@ ABS32
	.word	asm_thumb			@ ABS32 to the patch, Thumb bit
	.word	asm_arm2 - .			@ REL32 to the patch
