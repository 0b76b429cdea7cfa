/* libcprog: prints what glibc's atoi and OpenSSL's OpenSSL_version say,
 * every 2 ms: "atoi=<atoi("0x10")> ssl=<OpenSSL_version(0)>". */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

const char *OpenSSL_version(int type);

int main(void)
{
	/* Through a pointer: glibc's stdlib.h inlines atoi into strtol when
	 * optimising, and the test must call the library's atoi. */
	int (*volatile patoi)(const char *) = atoi;
	const char *volatile hex = "0x10";
	struct timespec ts = {0, 2000000};
	for (;;) {
		printf("atoi=%d ssl=%s\n", patoi(hex), OpenSSL_version(0));
		fflush(stdout);
		nanosleep(&ts, NULL);
	}
}
