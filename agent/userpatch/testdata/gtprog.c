/* gtprog N [MODE [ARG]]: N worker threads call gt_value(7) in a loop and
 * abort on any value other than the original (22) or the fixed (23) one;
 * the main thread prints "v=<value> ... calls=<gt_calls()>" every 2 ms:
 * the library's own call counter, which the patched gt_value must keep
 * counting. MODE adds what a patcher must cope with:
 *   churn        threads keep appearing and exiting;
 *   vfork SECS   a thread vforks a child that sleeps SECS seconds (the
 *                parent thread cannot stop meanwhile); prints vf=1 while
 *                the child sleeps, vf=2 after;
 *   signals      counts SIGRTMIN+6 sent with sigqueue (value = sequence
 *                number 1..65535): prints sig=<received> bad=<received
 *                with a wrong si_code, value or twice>;
 *   rocopy       maps the test library again, read-only, below the
 *                loaded copy (as a crash reporter or libbacktrace does);
 *   nap MS       the main thread prints "napping", sleeps MS ms in one
 *                nanosleep, and prints napped=<ms it took> on each line;
 *   exec         re-executes itself (same PID) with the arguments after
 *                "exec" when it reads a line on stdin. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

static volatile int vfdone;
static int vfsecs;

static void *vforker(void *arg)
{
	(void)arg;
	pid_t c = vfork();
	if (c == 0) {
		struct timespec ts = {vfsecs, 0};
		vfdone = 1; /* the memory is the parent's */
		nanosleep(&ts, NULL);
		_exit(0);
	}
	vfdone = 2;
	for (;;)
		pause();
	return NULL;
}

#define SIGS 65536
static volatile unsigned char seen[SIGS];
static volatile int got, bad;

static void onsig(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	int v = si->si_value.sival_int;
	if (si->si_code != SI_QUEUE || v <= 0 || v >= SIGS || seen[v])
		__atomic_add_fetch(&bad, 1, __ATOMIC_SEQ_CST);
	else
		seen[v] = 1;
	__atomic_add_fetch(&got, 1, __ATOMIC_SEQ_CST);
}

/* rocopy: the library once more, read-only, at a lower address. */
static void rocopy(void)
{
	FILE *m = fopen("/proc/self/maps", "r");
	char line[512], path[256];
	unsigned long lo = 0;
	while (m && fgets(line, sizeof line, m)) {
		unsigned long s, e, off;
		if (sscanf(line, "%lx-%lx %*s %lx %*s %*s %255s", &s, &e, &off, path) == 4 && strstr(path, "libgt-") && off == 0) {
			lo = s;
			break;
		}
	}
	if (m)
		fclose(m);
	if (!lo)
		exit(3);
	int fd = open(path, O_RDONLY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0)
		exit(3);
	for (unsigned long d = 16UL << 20; d <= lo; d += 16UL << 20) {
		void *p = mmap((void *)(lo - d), st.st_size, PROT_READ, MAP_PRIVATE | MAP_FIXED_NOREPLACE, fd, 0);
		if (p != MAP_FAILED)
			return;
	}
	exit(3);
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 0;
	const char *mode = argc > 2 ? argv[2] : "";
	if (strcmp(mode, "signals") == 0) {
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_sigaction = onsig;
		sa.sa_flags = SA_SIGINFO | SA_RESTART;
		sigaction(SIGRTMIN + 6, &sa, NULL);
	}
	if (strcmp(mode, "rocopy") == 0)
		rocopy();
	for (int i = 0; i < n; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, work, NULL) != 0)
			return 2;
	}
	if (strcmp(mode, "churn") == 0) {
		pthread_t t;
		if (pthread_create(&t, NULL, churn, NULL) != 0)
			return 2;
	}
	if (strcmp(mode, "vfork") == 0) {
		pthread_t t;
		vfsecs = argc > 3 ? atoi(argv[3]) : 5;
		if (pthread_create(&t, NULL, vforker, NULL) != 0)
			return 2;
	}
	if (strcmp(mode, "exec") == 0) {
		/* a line on stdin: become the program named after "exec" */
		int fl = fcntl(0, F_GETFL);
		fcntl(0, F_SETFL, fl | O_NONBLOCK);
	}
	long napped = -1;
	if (strcmp(mode, "nap") == 0) {
		long ms = argc > 3 ? atol(argv[3]) : 1000;
		struct timespec a, b, req = {ms / 1000, (ms % 1000) * 1000000L};
		printf("v=%d napping\n", gt_value(7));
		fflush(stdout);
		clock_gettime(CLOCK_MONOTONIC, &a);
		nanosleep(&req, NULL);
		clock_gettime(CLOCK_MONOTONIC, &b);
		napped = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
	}
	struct timespec ts = {0, 2000000};
	for (;;) {
		int v = gt_value(7);
		if (strcmp(mode, "vfork") == 0)
			printf("v=%d vf=%d calls=%d\n", v, vfdone, gt_calls());
		else if (napped >= 0)
			printf("v=%d napped=%ld calls=%d\n", v, napped, gt_calls());
		else if (strcmp(mode, "signals") == 0)
			printf("v=%d sig=%d bad=%d calls=%d\n", v, got, bad, gt_calls());
		else
			printf("v=%d calls=%d\n", v, gt_calls());
		fflush(stdout);
		if (strcmp(mode, "exec") == 0) {
			char c;
			if (read(0, &c, 1) == 1 && argc > 3)
				execv(argv[3], argv + 3);
		}
		nanosleep(&ts, NULL);
	}
}
