/* libdemo: the library the tests patch. The tests build it as the
 * target (no defines), as the original object (no defines) and as fixed
 * objects selected with one -DFIX_* define each. */
#include <stdio.h>
#include <string.h>

struct pair {
#ifdef FIX_STRUCT
	int b; /* the members swap: same size, different layout */
	int a;
#else
	int a;
	int b;
#endif
};

static int counter;
int demo_global = 42;
#ifdef FIX_SIZE
int demo_table[8] = {1, 2, 3, 4};
#else
int demo_table[4] = {1, 2, 3, 4};
#endif

const char *demo_name(void) { return "demo"; }

int demo_add(int a, int b)
{
	counter++;
	return a + b + demo_global;
}

/* Calls demo_add through the library's PLT (demo_add is exported and may
 * be interposed): a fix calling demo_add goes through the same GOT entry. */
int demo_len(const char *s) { return demo_add((int)strlen(s), 0) - demo_global; }

int demo_sum(const struct pair *p) { return p->a + p->b + demo_table[1]; }

int demo_greet(char *buf, int n)
{
#if defined(FIX_GREET)
	static int greet_calls; /* new storage: the patch's BSS */
	greet_calls++;
	return snprintf(buf, n, "hello, fixed %s %d %d", demo_name(), demo_add(counter, demo_global), greet_calls);
#elif defined(FIX_BIND)
	/* demo_sum is exported and nothing in the library calls it: which
	 * definition the process binds it to is unknown. */
	static const struct pair p = {1, 2};
	return snprintf(buf, n, "hello %s %d", demo_name(), demo_sum(&p));
#elif defined(FIX_MISSING)
	extern int demo_missing(void);
	return snprintf(buf, n, "hello %s %d", demo_name(), demo_missing());
#else
	return snprintf(buf, n, "hello %s %d", demo_name(), counter);
#endif
}

void demo_nop(void)
{
#ifdef FIX_NOP
	counter = 0;
#endif
}
