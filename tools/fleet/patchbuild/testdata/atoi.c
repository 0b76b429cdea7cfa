/* glibc's atoi (stdlib/atoi.c) and, with -DFIX, a fix that accepts any
 * base strtol detects. */
#include <stdlib.h>

#undef atoi
int atoi(const char *nptr)
{
#ifdef FIX
	return (int)strtol(nptr, (char **)NULL, 0);
#else
	return (int)strtol(nptr, (char **)NULL, 10);
#endif
}
