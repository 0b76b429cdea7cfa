/* bindprog: prints "tick=<bd_tick()> counter=<bd_counter>" every 2 ms.
 * It defines bd_name (interposing libbind's) and reads bd_counter, which
 * the link copies into the program. With "stdout", it replaces stdout
 * with a new FILE and prints "a" lines with putchar instead. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

extern int bd_counter;
int bd_tick(void);

int bd_name(void) { return 7; }

int main(int argc, char **argv)
{
	struct timespec ts = {0, 2000000};
	if (argc > 1 && strcmp(argv[1], "stdout") == 0) {
		/* The old stdout gets a 1 MiB buffer and is never flushed
		 * again: what a putchar bound to it writes does not show. */
		/* Through a pointer: stdio.h inlines putchar into putc when
		 * optimising, and the test must call the library's putchar. */
		int (*volatile pc)(int) = putchar;
		static char hold[1 << 20];
		setvbuf(stdout, hold, _IOFBF, sizeof hold);
		stdout = fdopen(dup(1), "w");
		for (;;) {
			pc('a');
			pc('\n');
			fflush(stdout);
			nanosleep(&ts, NULL);
		}
	}
	for (;;) {
		int v = bd_tick();
		printf("tick=%d counter=%d\n", v, bd_counter);
		fflush(stdout);
		nanosleep(&ts, NULL);
	}
}
