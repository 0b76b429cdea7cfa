/* holdtrace PID: attaches to every thread of PID with PTRACE_SEIZE and
 * holds on, as a debugger would, until killed. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	char path[64];
	snprintf(path, sizeof path, "/proc/%s/task", argv[1]);
	DIR *d = opendir(path);
	if (!d)
		return 1;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (ptrace(PTRACE_SEIZE, atoi(e->d_name), 0, 0) != 0) {
			perror("PTRACE_SEIZE");
			return 1;
		}
	}
	closedir(d);
	puts("attached");
	fflush(stdout);
	for (;;)
		pause();
}
