/* gtprog N [churn]: N worker threads call gt_value(7) in a loop and abort on any
 * value other than the original (22) or the fixed (23) one; the main
 * thread prints "v=<value> calls=<gt_calls()>" every 2 ms: the library's
 * own call counter, which the patched gt_value must keep counting. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int gt_value(int x);
int gt_calls(void);

static void *brief(void *arg)
{
	(void)arg;
	for (int i = 0; i < 100; i++)
		if (gt_value(7) < 22)
			abort();
	return NULL;
}

/* churn: threads keep appearing and exiting, so a patcher must re-read
 * the thread list until it is stable. */
static void *churn(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_t t;
		if (pthread_create(&t, NULL, brief, NULL) == 0)
			pthread_join(t, NULL);
	}
	return NULL;
}

static void *work(void *arg)
{
	(void)arg;
	for (;;) {
		int v = gt_value(7);
		if (v != 22 && v != 23) {
			fprintf(stderr, "BAD %d\n", v);
			abort();
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 0;
	for (int i = 0; i < n; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, work, NULL) != 0)
			return 2;
	}
	if (argc > 2) {
		pthread_t t;
		if (pthread_create(&t, NULL, churn, NULL) != 0)
			return 2;
	}
	struct timespec ts = {0, 2000000};
	for (;;) {
		int v = gt_value(7);
		printf("v=%d calls=%d\n", v, gt_calls());
		fflush(stdout);
		nanosleep(&ts, NULL);
	}
}
