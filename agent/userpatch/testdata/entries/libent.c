/* libent: functions whose entries are hard to patch, built with -Os
 * (functions packed at any byte, loop heads right after the first
 * instruction). Each FIX_* macro makes one fix, for one bundle. */
#include <unistd.h>

__attribute__((noinline)) long ent_step(long n)
{
	usleep(2000);
	return n;
}

/* ent_loop's loop head is entry+1 on amd64 (after "push %rcx"), +2 in
 * Thumb (after "push {r3, lr}"), +8 on arm64: inside a trampoline. A
 * thread waiting in ent_step has its return address past the trampoline
 * bytes, then branches back into them. */
long ent_loop(long n)
{
	do
		n = ent_step(n) - 1;
	while (n > 0);
#ifdef FIX_LOOP
	return n + 42;
#else
	return n;
#endif
}

/* ent_pad starts at an even address and is 3 bytes on amd64 ("mov
 * $7,%al; ret"): ent_odd after it starts at an odd one. */
__attribute__((aligned(2))) char ent_pad(void) { return 7; }

int ent_odd(int x)
{
#ifdef FIX_ODD
	return x * 5 + 2;
#else
	return x * 5 + 1;
#endif
}

/* ent_long is never called: a bundle for it checks its last bytes. */
long ent_long(long a, long b)
{
	long r = a;
	for (int i = 0; i < 9; i++)
		r = r * 31 + (b ^ (i * 0x1234567)) - (r >> 3);
#ifdef FIX_LONG
	return r + 1;
#else
	return r;
#endif
}

#if defined(__x86_64__)
/* ent_wait is pause(2) with its syscall instruction ending at entry+5,
 * where a 5-byte jmp ends: the kernel restarts an interrupted pause two
 * bytes back, at entry+3. */
__asm__(".section .text.ent_wait,\"ax\",@progbits\n"
	".globl ent_wait\n"
	".type ent_wait,@function\n"
	"ent_wait:\n"
	"	push $34\n" /* __NR_pause */
	"	pop %rax\n"
	"	syscall\n"
#ifdef FIX_WAIT
	"	inc %rax\n"
#endif
	"	ret\n"
	".size ent_wait, .-ent_wait\n"
	".text\n");
#else
long ent_wait(void)
{
	return pause();
}
#endif
