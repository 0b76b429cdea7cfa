/* entprog [wait]: prints "odd=<ent_odd(3)> loop=<ent_loop(3)>" every
 * ~8 ms (6 of them inside ent_loop); with "wait", a second thread sits
 * in ent_wait and prints "woke=<n>" each time a SIGUSR1 ends it. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

long ent_loop(long n);
int ent_odd(int x);
long ent_wait(void);

static void on_usr1(int sig) { (void)sig; }

static void *waiter(void *arg)
{
	(void)arg;
	for (int n = 1;; n++) {
		ent_wait();
		printf("woke=%d\n", n);
		fflush(stdout);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1; /* no SA_RESTART: pause returns */
	sigaction(SIGUSR1, &sa, NULL);
	if (argc > 1 && strcmp(argv[1], "wait") == 0) {
		pthread_t t;
		sigset_t usr1;
		pthread_create(&t, NULL, waiter, NULL);
		/* SIGUSR1 sent to the process goes to the waiter. */
		sigemptyset(&usr1);
		sigaddset(&usr1, SIGUSR1);
		pthread_sigmask(SIG_BLOCK, &usr1, NULL);
		printf("waiting\n");
		fflush(stdout);
		for (;;)
			pause();
	}
	for (;;) {
		int o = ent_odd(3);
		long l = ent_loop(3);
		printf("odd=%d loop=%ld\n", o, l);
		fflush(stdout);
		usleep(2000);
	}
}
