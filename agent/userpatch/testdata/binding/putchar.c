/* glibc's putchar, as a fix would rebuild it: writes to stdout, the
 * program's (which the program may have replaced). FIX_PUTCHAR writes
 * 'b' for 'a', for putchar.ulp. */
#include <stdio.h>

int putchar(int c)
{
#ifdef FIX_PUTCHAR
	unsigned char ch = c == 'a' ? 'b' : c;
	return fwrite(&ch, 1, 1, stdout) == 1 ? c : EOF;
#else
	unsigned char ch = c;
	return fwrite(&ch, 1, 1, stdout) == 1 ? ch : EOF;
#endif
}
