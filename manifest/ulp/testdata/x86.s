# x86-64 relocations gcc does not emit from link.c at -O2.
	.section .text.asm_x86,"ax",@progbits
	.globl asm_x86
asm_x86:
	movl	$d_counter, %eax		# R_X86_64_32
	movl	$d_counter+0x7ff, %eax		# R_X86_64_32, addend
	movq	d_table(,%rdi,8), %rax		# R_X86_64_32S
	movq	d_table-16(,%rdi,8), %rax	# R_X86_64_32S, negative addend
	movabsq	$d_counter+16, %rax		# R_X86_64_64
	leaq	d_counter-8(%rip), %rax		# R_X86_64_PC32
	leaq	.Lhere(%rip), %rax		# R_X86_64_PC32 to the patch
	call	t_helper@PLT			# R_X86_64_PLT32
	jmp	a_helper			# R_X86_64_PLT32 or PC32
.Lhere:	ret

	.section .data.asm_x86,"aw",@progbits
	.quad	d_table - .			# R_X86_64_PC64
	.quad	asm_x86 - . + 3			# R_X86_64_PC64 to the patch
	.quad	asm_x86 + 4			# R_X86_64_64
	.long	d_counter - .			# R_X86_64_PC32
	.long	d_counter + 12			# R_X86_64_32
