/* Functions whose entries are hard to patch, for entry_test.go. Built
   with -Os (functions packed at any byte) and -DFIX for the fix. */

extern long en_step(long n);

/* en_loop's loop head is right after its first instruction: amd64
   "push %rcx" (1 byte), Thumb "push {r3, lr}" (2 bytes); arm64 "stp;
   mov" then the loop (8 bytes, inside a far trampoline's 16). */
long en_loop(long n)
{
	do
		n = en_step(n) - 1;
	while (n > 0);
#ifdef FIX
	return n + 42;
#else
	return n;
#endif
}

/* en_odd follows en_loop, which is 20 bytes at -Os on amd64 and starts
   at an odd address itself. */
int en_odd(int x)
{
#ifdef FIX
	return x * 5 + 2;
#else
	return x * 5 + 1;
#endif
}

/* en_pad is 3 bytes on amd64 at -Os ("mov $7,%al; ret" plus alignment
   1), so that en_odd after it starts at an odd address. */
char en_pad(void) { return 7; }

/* en_switch dispatches through a jump table in .rodata. */
int en_switch(int x, int y)
{
	switch (x) {
	case 0: return y + 3;
	case 1: return y * 7;
	case 2: return y - 11;
	case 3: return y ^ 0x55;
	case 4: return y << 3;
#ifdef FIX
	case 5: return y >> 2;
#else
	case 5: return y >> 1;
#endif
	default: return 0;
	}
}
